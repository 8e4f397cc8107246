package botauth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/dunglas/httpsfv"
)

// component is one parsed component identifier (RFC 9421 §2): a lowercase field
// name or a derived component name, with the parameters this package supports.
type component struct {
	name  string // "@method", "content-type", ...
	sf    bool   // ;sf: strict structured-field serialisation (§2.1.1)
	bs    bool   // ;bs: byte-sequence wrapping of each field line (§2.1.3)
	req   bool   // ;req: in a response signature, the component of the request (§2.4)
	key   string // ;key="x": one member of a dictionary field (§2.1.2)
	qname string // ;name="x": @query-param's parameter name (§2.2.8)
	// ident is the serialised identifier as it appears in the signature base and
	// in the covered-components list: "name";param=...
	ident string
}

// derived lists the derived components this package computes (RFC 9421 §2.2).
// @signature-params is absent on purpose: it must never be covered.
var derived = map[string]bool{
	"@method":         true,
	"@target-uri":     true,
	"@authority":      true,
	"@scheme":         true,
	"@request-target": true,
	"@path":           true,
	"@query":          true,
	"@query-param":    true,
	"@status":         true,
}

// short is the identifier without the quotes around its name, the form Signed
// reports and Covers accepts: `@query-param;name="Pet"`, `content-type`.
func (c component) short() string {
	return c.name + c.ident[len(c.name)+2:]
}

// parseComponentArg parses a component as a caller writes it: `@path`,
// `signature-agent;key="sig1"`, or the serialised form `"@path";req`.
func parseComponentArg(s string) (component, error) {
	if s == "" {
		return component{}, errors.New("empty component identifier")
	}
	sfv := s
	if s[0] != '"' {
		name, params, _ := strings.Cut(s, ";")
		if !validName(name) {
			return component{}, fmt.Errorf("component %q: invalid name", s)
		}
		sfv = `"` + name + `"`
		if params != "" {
			sfv += ";" + params
		}
	}
	item, err := httpsfv.UnmarshalItem([]string{sfv})
	if err != nil {
		return component{}, fmt.Errorf("component %q: %w", s, err)
	}
	return componentFromItem(item)
}

// componentFromItem validates one entry of a covered-components inner list.
// Anything this package cannot compute exactly is an error, never a guess: a
// silently different signature base would only show up as a mismatch.
func componentFromItem(item httpsfv.Item) (component, error) {
	name, ok := item.Value.(string)
	if !ok {
		return component{}, fmt.Errorf("component identifier %v is not a string", item.Value)
	}
	if !validName(name) {
		return component{}, fmt.Errorf("component %q: invalid name (must be lowercase)", name)
	}
	c := component{name: name}
	isDerived := name[0] == '@'
	if isDerived && !derived[name] {
		return component{}, fmt.Errorf("component %q: unsupported derived component", name)
	}
	if item.Params == nil {
		item.Params = httpsfv.NewParams()
	}
	hasKey, hasName := false, false
	for _, p := range item.Params.Names() {
		v, _ := item.Params.Get(p)
		switch p {
		case "sf", "bs", "req":
			if b, ok := v.(bool); !ok || !b {
				return component{}, fmt.Errorf("component %q: parameter %s must be a true boolean", name, p)
			}
			switch p {
			case "sf":
				c.sf = true
			case "bs":
				c.bs = true
			case "req":
				c.req = true
			}
		case "key", "name":
			str, ok := v.(string)
			if !ok {
				return component{}, fmt.Errorf("component %q: parameter %s must be a string", name, p)
			}
			if p == "key" {
				c.key, hasKey = str, true
			} else {
				c.qname, hasName = str, true
			}
		default:
			// tr (trailers) and any extension parameter: unsupported.
			return component{}, fmt.Errorf("component %q: unsupported parameter %q", name, p)
		}
	}
	switch {
	case isDerived && (c.sf || c.bs || hasKey):
		return component{}, fmt.Errorf("component %q: sf, bs and key apply to fields only", name)
	case hasName != (name == "@query-param"):
		return component{}, fmt.Errorf("component %q: the name parameter goes with @query-param, and only there", name)
	case c.bs && (c.sf || hasKey):
		return component{}, fmt.Errorf("component %q: bs cannot be combined with sf or key", name)
	case hasKey && c.sf:
		return component{}, fmt.Errorf("component %q: key already implies sf", name)
	case name == "@status" && c.req:
		return component{}, fmt.Errorf("component %q: @status has no request value", name)
	}
	if hasKey && !validKey(c.key) {
		return component{}, fmt.Errorf("component %q: invalid dictionary key %q", name, c.key)
	}
	ident, err := httpsfv.Marshal(item)
	if err != nil {
		return component{}, fmt.Errorf("component %q: %w", name, err)
	}
	c.ident = ident
	return c, nil
}

// validName reports whether s is a lowercase field name (an HTTP token) or a
// derived component name.
func validName(s string) bool {
	if s == "" {
		return false
	}
	start := 0
	if s[0] == '@' {
		start = 1
		if len(s) == 1 {
			return false
		}
	}
	for i := start; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validKey reports whether s is a structured-field key (RFC 9651 §3.1.2):
// signature labels and dictionary keys.
func validKey(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] == '*') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '*') {
			return false
		}
	}
	return true
}

// message is what a signature base is computed over: a request, or a response
// together with the request that caused it (for ;req components).
type message struct {
	req  *http.Request
	resp *http.Response // nil for a request signature
	// dicts caches dictionary fields parsed for ;key components, so that a
	// field is parsed once per signature base however many members are
	// covered; nil: no cache (buildBase sets one up when it needs it).
	dicts map[dictKey]dictResult
}

// dictKey names a field of the request or of the response.
type dictKey struct {
	name      string
	onRequest bool
}

// dictResult is a parsed dictionary field, or why it is not one.
type dictResult struct {
	d   *httpsfv.Dictionary
	err error
}

// value computes a component's value (RFC 9421 §2.1, §2.2).
func (m message) value(c component) (string, error) {
	r := m.req
	onRequest := m.resp == nil || c.req
	if c.req && m.resp == nil {
		return "", errors.New("req parameter is only valid in a response signature")
	}
	if onRequest && r == nil {
		return "", errors.New("no request to take the component from")
	}
	if c.name[0] == '@' {
		if c.name == "@status" {
			if m.resp == nil {
				return "", errors.New("@status is only valid in a response signature")
			}
			if m.resp.StatusCode < 100 || m.resp.StatusCode > 999 {
				return "", fmt.Errorf("status %d is not three digits", m.resp.StatusCode)
			}
			return strconv.Itoa(m.resp.StatusCode), nil
		}
		if !onRequest {
			return "", fmt.Errorf("%s is a request component: in a response signature it needs ;req", c.name)
		}
		return derivedValue(r, c)
	}
	var h http.Header
	if onRequest {
		h = r.Header
	} else {
		h = m.resp.Header
	}
	values := h.Values(c.name)
	if len(values) == 0 && c.name == "host" && onRequest && r.Host != "" {
		// Go moves the Host header into Request.Host.
		values = []string{r.Host}
	}
	if len(values) == 0 {
		return "", errors.New("field absent")
	}
	if c.key != "" && m.dicts != nil {
		k := dictKey{name: c.name, onRequest: onRequest}
		res, ok := m.dicts[k]
		if !ok {
			res.d, res.err = parseDictField(values)
			m.dicts[k] = res
		}
		if res.err != nil {
			return "", res.err
		}
		return dictMember(res.d, c.key)
	}
	return fieldValue(c, values)
}

// parseDictField canonicalises a field's lines and parses them as a dictionary.
func parseDictField(lines []string) (*httpsfv.Dictionary, error) {
	clean, err := cleanLines(lines)
	if err != nil {
		return nil, err
	}
	d, err := httpsfv.UnmarshalDictionary(clean)
	if err != nil {
		return nil, fmt.Errorf("not a dictionary: %w", err)
	}
	return d, nil
}

// dictMember is one member's value serialised strictly (RFC 9421 §2.1.2).
func dictMember(d *httpsfv.Dictionary, key string) (string, error) {
	member, ok := d.Get(key)
	if !ok {
		return "", fmt.Errorf("dictionary has no member %q", key)
	}
	return httpsfv.Marshal(member)
}

// cleanLines is cleanLine applied to each line.
func cleanLines(lines []string) ([]string, error) {
	clean := make([]string, len(lines))
	for i, l := range lines {
		v, err := cleanLine(l)
		if err != nil {
			return nil, err
		}
		clean[i] = v
	}
	return clean, nil
}

// fieldValue canonicalises a field's lines (RFC 9421 §2.1): each line trimmed,
// obs-fold replaced by a space, lines joined with ", "; then ;sf, ;key or ;bs.
func fieldValue(c component, lines []string) (string, error) {
	if c.key != "" {
		d, err := parseDictField(lines)
		if err != nil {
			return "", err
		}
		return dictMember(d, c.key)
	}
	clean, err := cleanLines(lines)
	if err != nil {
		return "", err
	}
	switch {
	case c.bs:
		var b strings.Builder
		for i, v := range clean {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte(':')
			b.WriteString(base64.StdEncoding.EncodeToString([]byte(v)))
			b.WriteByte(':')
		}
		return b.String(), nil
	case c.sf:
		return reserialise(c.name, clean)
	}
	return strings.Join(clean, ", "), nil
}

// cleanLine trims a field line and removes obs-fold. A bare CR or LF left in a
// value could forge extra lines in the signature base, so it is an error.
func cleanLine(v string) (string, error) {
	if strings.ContainsAny(v, "\r\n") {
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			c := v[i]
			if c == '\r' || c == '\n' {
				j := i
				if c == '\r' && j+1 < len(v) && v[j+1] == '\n' {
					j++
				}
				if j+1 < len(v) && (v[j+1] == ' ' || v[j+1] == '\t') {
					// obs-fold: CRLF followed by whitespace becomes one space.
					b.WriteByte(' ')
					i = j + 1
					for i+1 < len(v) && (v[i+1] == ' ' || v[i+1] == '\t') {
						i++
					}
					continue
				}
				return "", errors.New("field value contains a line break")
			}
			b.WriteByte(c)
		}
		v = b.String()
	}
	return strings.Trim(v, " \t"), nil
}

// Structured types of the fields ;sf is likely to meet. RFC 9421 §2.1.1 needs the
// type to re-serialise; fields not listed are tried as dictionary, list, item.
var sfTypes = map[string]string{
	"signature-input":     "dict",
	"signature":           "dict",
	"accept-signature":    "dict",
	"content-digest":      "dict",
	"repr-digest":         "dict",
	"want-content-digest": "dict",
	"want-repr-digest":    "dict",
	"cache-status":        "list",
	"proxy-status":        "list",
	"signature-agent":     "item-or-dict",
}

// reserialise parses a field as a structured field and serialises it strictly.
func reserialise(name string, lines []string) (string, error) {
	var order []string
	switch sfTypes[name] {
	case "dict":
		order = []string{"dict"}
	case "list":
		order = []string{"list"}
	case "item-or-dict":
		order = []string{"item", "dict"}
	default:
		order = []string{"dict", "list", "item"}
	}
	var lastErr error
	for _, t := range order {
		var v httpsfv.StructuredFieldValue
		var err error
		switch t {
		case "dict":
			v, err = httpsfv.UnmarshalDictionary(lines)
		case "list":
			v, err = httpsfv.UnmarshalList(lines)
		default:
			v, err = httpsfv.UnmarshalItem(lines)
		}
		if err != nil {
			lastErr = err
			continue
		}
		return httpsfv.Marshal(v)
	}
	return "", fmt.Errorf("not a structured field: %w", lastErr)
}

// derivedValue computes a request's derived component (RFC 9421 §2.2).
func derivedValue(r *http.Request, c component) (string, error) {
	switch c.name {
	case "@method":
		if r.Method == "" {
			return http.MethodGet, nil // net/http's meaning of an empty method
		}
		return r.Method, nil
	case "@authority":
		return authority(r)
	case "@scheme":
		return scheme(r), nil
	case "@target-uri":
		a, err := authority(r)
		if err != nil {
			return "", err
		}
		return scheme(r) + "://" + a + requestTarget(r), nil
	case "@request-target":
		return requestTarget(r), nil
	case "@path":
		return path(r), nil
	case "@query":
		if r.URL == nil {
			return "?", nil
		}
		return "?" + r.URL.RawQuery, nil
	case "@query-param":
		return queryParam(r, c.qname)
	}
	return "", fmt.Errorf("unsupported derived component %s", c.name)
}

// scheme is the request's scheme: URL.Scheme when set (client requests, or a
// server behind TLS termination that sets r.URL.Scheme = "https" before
// verifying), else "https" when the connection is TLS, else "http".
func scheme(r *http.Request) string {
	if r.URL != nil && r.URL.Scheme != "" {
		return strings.ToLower(r.URL.Scheme)
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// authority is Host lowercased with the scheme's default port dropped
// (RFC 9421 §2.2.3 asks for the normalised authority).
func authority(r *http.Request) (string, error) {
	host := r.Host
	if host == "" && r.URL != nil {
		host = r.URL.Host
	}
	if host == "" {
		return "", errors.New("request has no authority")
	}
	if strings.ContainsAny(host, " \t\r\n") {
		return "", errors.New("authority contains whitespace")
	}
	host = strings.ToLower(host)
	switch scheme(r) {
	case "https":
		host = strings.TrimSuffix(host, ":443")
	case "http":
		host = strings.TrimSuffix(host, ":80")
	}
	return host, nil
}

// path is the absolute path as sent (percent-encoding kept), "/" when empty.
func path(r *http.Request) string {
	if r.URL == nil {
		return "/"
	}
	p := r.URL.EscapedPath()
	if p == "" {
		return "/"
	}
	return p
}

// requestTarget is the origin-form request target: path and query. The
// absolute, authority (CONNECT) and asterisk forms are not supported.
func requestTarget(r *http.Request) string {
	t := path(r)
	if r.URL != nil && (r.URL.RawQuery != "" || r.URL.ForceQuery) {
		t += "?" + r.URL.RawQuery
	}
	return t
}

// queryParam is the value of one named query parameter (RFC 9421 §2.2.8): the
// query parsed as application/x-www-form-urlencoded, the value re-encoded. The
// name parameter is itself in encoded form. A missing or repeated parameter is an
// error, as the RFC requires.
func queryParam(r *http.Request, name string) (string, error) {
	if r.URL == nil {
		return "", fmt.Errorf("query parameter %q absent", name)
	}
	found, value := 0, ""
	for _, pair := range strings.Split(r.URL.RawQuery, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if formEncode(formDecode(k)) == name {
			found++
			value = formEncode(formDecode(v))
		}
	}
	switch found {
	case 0:
		return "", fmt.Errorf("query parameter %q absent", name)
	case 1:
		return value, nil
	}
	return "", fmt.Errorf("query parameter %q repeated", name)
}

// formDecode decodes like the WHATWG urlencoded parser: '+' is a space, and a
// malformed percent sequence stays as it is rather than failing.
func formDecode(s string) string {
	if !strings.ContainsAny(s, "+%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// formEncode percent-encodes with the application/x-www-form-urlencoded set,
// space as %20 (RFC 9421 §2.2.8).
func formEncode(s string) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '*' || c == '-' || c == '.' || c == '_' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&15])
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
