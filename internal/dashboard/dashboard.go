// Package dashboard is the operator's dashboard: one page, its style sheet and its script,
// embedded in the binary and served by every node on its admin address under /dashboard/.
//
// The page is static. It holds no data and no secret: in the browser it reads the node's
// GET /v1/status every second with the admin token the operator gives it (in the URL
// fragment, which never reaches a server or a log, or pasted into a form), and keeps the
// token in the tab's sessionStorage. Everything it shows comes from that JSON, the types
// of package admin and package node.
//
// The package must not import the data plane or the node: it serves files and nothing
// else, so that the admin server can mount it without a dependency loop. The assets link
// to nothing outside the node (no CDN, no font, no framework) and need no build step; the
// Content-Security-Policy that Handler sends forbids anything else.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"path"
	"time"
)

//go:embed assets
var assets embed.FS

// ContentSecurityPolicy is sent with every file: the page may load and fetch from its own
// origin only, runs no inline script or style, and may not be framed.
const ContentSecurityPolicy = "default-src 'self'; connect-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// file is one served asset, read once at start.
type file struct {
	name  string // for http.ServeContent's range and type handling
	ctype string
	etag  string
	body  []byte
}

// routes maps a request path (after the /dashboard prefix is stripped) to its asset.
var routes = map[string]string{
	"/":           "index.html",
	"/index.html": "index.html",
	"/style.css":  "style.css",
	"/app.js":     "app.js",
}

// types is the content type of each asset, by extension: fixed here rather than guessed
// from the system's MIME tables, which differ between hosts.
var types = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
}

// Handler returns the dashboard's files: GET or HEAD of /, /index.html, /style.css and
// /app.js, with their content types, Cache-Control: no-cache (a node's upgrade shows at
// once; the ETag makes a revalidation cheap) and ContentSecurityPolicy. Any other path is
// 404 and any other method 405. Mount it with http.StripPrefix("/dashboard", Handler()).
// Safe for concurrent use.
func Handler() http.Handler {
	files := map[string]*file{}
	for p, name := range routes {
		b, err := assets.ReadFile("assets/" + name)
		if err != nil {
			panic("dashboard: embedded asset missing: " + name) // a build error, not a runtime one
		}
		sum := sha256.Sum256(b)
		files[p] = &file{name: name, ctype: types[path.Ext(name)], etag: `"` + hex.EncodeToString(sum[:8]) + `"`, body: b}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
	})
}
