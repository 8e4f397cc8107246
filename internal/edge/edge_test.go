package edge

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"rhizome/internal/snapshot"
)

func spec(origin string) snapshot.Spec {
	return snapshot.Spec{Version: "t", Sites: []snapshot.SiteSpec{{
		Name: "s", Hosts: []string{"*"}, Origins: []snapshot.OriginSpec{{URL: origin}},
	}}}
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func start(t *testing.T, sp snapshot.Spec, o Options) *Node {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.AdminListen == "" {
		o.AdminListen = "127.0.0.1:0"
	}
	n, err := Start(sp, o)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func stop(t *testing.T, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestDiskTierSurvivesRestart: a node restarted with its origin gone still answers from the
// objects it stored before.
func TestDiskTierSurvivesRestart(t *testing.T) {
	var hits atomic.Int32
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=3600")
		io.WriteString(w, "persisted body")
	}))
	dir := t.TempDir()
	n := start(t, spec(origin.URL), Options{DataDir: dir})
	url := "http://" + n.Addr.String() + "/p"
	get(t, url)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _ := get(t, url)
		if strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never became a hit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop(t, n)
	origin.Close()

	n2 := start(t, spec(origin.URL), Options{DataDir: dir, Listen: n.Addr.String()})
	defer stop(t, n2)
	resp, body := get(t, url)
	if body != "persisted body" || !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("after restart: %d %q Cache-Status %q", resp.StatusCode, body, resp.Header.Get("Cache-Status"))
	}
	if hits.Load() != 1 {
		t.Fatalf("origin saw %d requests", hits.Load())
	}
}

func TestBadSpecRefused(t *testing.T) {
	_, err := Start(snapshot.Spec{Sites: []snapshot.SiteSpec{{
		Name: "s", Hosts: []string{"*"}, Origins: []snapshot.OriginSpec{{URL: "ftp://x"}},
	}}}, Options{Listen: "127.0.0.1:0", AdminListen: "off"})
	if err == nil || !strings.Contains(err.Error(), `sites[0].origins[0].url: "ftp://x": scheme "ftp" not allowed`) {
		t.Fatalf("err = %v", err)
	}
}

func TestAdminAuthAndPurge(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		io.WriteString(w, "x")
	}))
	defer origin.Close()
	n := start(t, spec(origin.URL), Options{AdminToken: "secret"})
	defer stop(t, n)
	admin := "http://" + n.AdminAddr.String()
	for _, tok := range []string{"", "wrong"} {
		req, _ := http.NewRequest("POST", admin+"/v1/purge", strings.NewReader(`{"tags":["a"]}`))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("token %q: status %d, want 401", tok, resp.StatusCode)
		}
	}
	for body, want := range map[string]int{
		`{"urls":["ftp://x/"]}`:              400,
		`{"bogus":1}`:                        400,
		`{}`:                                 400,
		`not json`:                           400,
		`{"prefixes":["http://127.0.0.1/"]}`: 200,
	} {
		req, _ := http.NewRequest("POST", admin+"/v1/purge", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("purge %s: %d %s, want %d", body, resp.StatusCode, b, want)
		}
	}
}
