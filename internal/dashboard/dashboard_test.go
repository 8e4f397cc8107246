package dashboard

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandlerServesAssets(t *testing.T) {
	srv := httptest.NewServer(http.StripPrefix("/dashboard", Handler()))
	defer srv.Close()
	for _, c := range []struct {
		path, ctype, contains string
	}{
		{"/dashboard/", "text/html; charset=utf-8", "<title>rhizome dashboard</title>"},
		{"/dashboard/index.html", "text/html; charset=utf-8", `<script src="app.js"`},
		{"/dashboard/style.css", "text/css; charset=utf-8", "--bg:"},
		{"/dashboard/app.js", "text/javascript; charset=utf-8", `fetch("/v1/status"`},
	} {
		t.Run(c.path, func(t *testing.T) {
			res, err := http.Get(srv.URL + c.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}
			h := res.Header
			for k, want := range map[string]string{
				"Content-Type":            c.ctype,
				"Cache-Control":           "no-cache",
				"Content-Security-Policy": ContentSecurityPolicy,
				"X-Content-Type-Options":  "nosniff",
			} {
				if got := h.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			if !strings.Contains(string(body), c.contains) {
				t.Errorf("body lacks %q", c.contains)
			}
			// A revalidation with the ETag costs no body.
			req, _ := http.NewRequest(http.MethodGet, srv.URL+c.path, nil)
			req.Header.Set("If-None-Match", h.Get("ETag"))
			res, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusNotModified {
				t.Errorf("If-None-Match: status %d, want 304", res.StatusCode)
			}
		})
	}
}

func TestCSPIsStrict(t *testing.T) {
	for _, want := range []string{"default-src 'self'", "connect-src 'self'", "script-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(ContentSecurityPolicy, want) {
			t.Errorf("CSP lacks %q", want)
		}
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe") {
		t.Errorf("CSP allows something unsafe: %s", ContentSecurityPolicy)
	}
}

func TestHandlerRefuses(t *testing.T) {
	srv := httptest.NewServer(http.StripPrefix("/dashboard", Handler()))
	defer srv.Close()
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/dashboard/nope.js", http.StatusNotFound},
		{"GET", "/dashboard/assets/app.js", http.StatusNotFound},
		{"GET", "/dashboard/../go.mod", http.StatusNotFound},
		{"GET", "/dashboard/app.js/", http.StatusNotFound},
		{"GET", "/dashboard/APP.JS", http.StatusNotFound},
		{"POST", "/dashboard/", http.StatusMethodNotAllowed},
		{"DELETE", "/dashboard/app.js", http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, res.StatusCode, c.want)
		}
	}
	// HEAD is served like GET, without a body.
	res, err := http.Head(srv.URL + "/dashboard/style.css")
	if err != nil || res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/css; charset=utf-8" {
		t.Fatalf("HEAD: %v %v", res, err)
	}
}

// TestAssetsSelfContained greps every embedded file: the page may reach nothing but its
// own node, and writes data to the DOM as text only.
func TestAssetsSelfContained(t *testing.T) {
	absolute := regexp.MustCompile(`(?i)\b(?:https?|wss?|ftp):/{2}[^\s"'<>)]*`)
	protoRelative := regexp.MustCompile(`(?i)(?:src|href|action)\s*=\s*["']?//|url\(\s*["']?//|@import`)
	allowed := map[string]bool{"http://www.w3.org/2000/svg": true} // the SVG namespace name, never fetched
	served := map[string]bool{}
	for _, name := range routes {
		served["assets/"+name] = true
	}
	err := fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !served[path] {
			t.Errorf("%s is embedded but not served", path)
		}
		b, err := assets.ReadFile(path)
		if err != nil {
			return err
		}
		for _, u := range absolute.FindAllString(string(b), -1) {
			if !allowed[u] {
				t.Errorf("%s: absolute URL %q: the dashboard must not reach outside its node", path, u)
			}
		}
		if m := protoRelative.FindString(string(b)); m != "" {
			t.Errorf("%s: %q loads from elsewhere", path, m)
		}
		if strings.HasSuffix(path, ".js") {
			for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
				if strings.Contains(string(b), sink) {
					t.Errorf("%s uses %s: insert data as text only", path, sink)
				}
			}
		}
		if strings.HasSuffix(path, ".html") && regexp.MustCompile(`(?i)<script>|\sstyle=|\son[a-z]+=`).Match(b) {
			t.Errorf("%s has inline script, style or handler: the CSP forbids them", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
