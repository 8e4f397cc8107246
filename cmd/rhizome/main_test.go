package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"rhizome/internal/edge"
	"rhizome/internal/snapshot"
)

func TestProxyFlagErrorsNameTheFlag(t *testing.T) {
	cases := map[string][]string{
		`--origin[1]: "ftp://x": scheme "ftp" not allowed`: {"proxy", "--origin", "http://127.0.0.1:1", "--origin", "ftp://x"},
		`--origin: at least one origin is required`:        {"proxy"},
		`--trusted-proxy[0]: "10.0.0.0/99"`:                {"proxy", "--origin", "http://a", "--trusted-proxy", "10.0.0.0/99"},
		`--log-level "loud"`:                               {"proxy", "--origin", "http://a", "--log-level", "loud"},
		`invalid value "lots" for flag -cache-memory`:      {"proxy", "--origin", "http://a", "--cache-memory", "lots"},
		`unknown command "frobnicate"`:                     {"frobnicate"},
	}
	for want, args := range cases {
		t.Run(want, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(args, &out, &errb); code == 0 {
				t.Fatalf("exit 0 for %v", args)
			}
			if !strings.Contains(errb.String(), want) {
				t.Fatalf("stderr %q lacks %q", errb.String(), want)
			}
		})
	}
}

func TestPurgeCommand(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Cache-Tag", "all")
		io.WriteString(w, r.URL.Path)
	}))
	defer origin.Close()
	dir := t.TempDir()
	node, err := edge.Start(snapshot.Spec{Sites: []snapshot.SiteSpec{{
		Name: "s", Hosts: []string{"*"}, Origins: []snapshot.OriginSpec{{URL: origin.URL}},
	}}}, edge.Options{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		node.Shutdown(ctx)
	}()
	base := "http://" + node.Addr.String()
	warm := func(paths ...string) {
		for _, p := range paths {
			deadline := time.Now().Add(5 * time.Second)
			for {
				resp, err := http.Get(base + p)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s never cached", p)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	admin := node.AdminAddr.String()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{base + "/a"}, "purged 1 objects"},
		{[]string{"--prefix", base + "/dir/"}, "purged 2 objects"},
		{[]string{"--tag", "all"}, "purged 1 objects"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			warm("/a", "/dir/1", "/dir/2")
			if c.args[0] == "--tag" {
				// only /a remains after the earlier cases purged the rest... warm made all three
				// again, so purge the directory first to leave exactly one tagged object.
				run([]string{"purge", "--admin", admin, "--data-dir", dir, "--prefix", base + "/dir/"}, io.Discard, io.Discard)
			}
			var out, errb bytes.Buffer
			args := append([]string{"purge", "--admin", admin, "--data-dir", dir}, c.args...)
			if code := run(args, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			if strings.TrimSpace(out.String()) != c.want {
				t.Fatalf("output %q, want %q", out.String(), c.want)
			}
		})
	}
	var errb bytes.Buffer
	if code := run([]string{"purge", "--admin", admin, "--token", "nope", base + "/a"}, io.Discard, &errb); code == 0 || !strings.Contains(errb.String(), "401") {
		t.Fatalf("wrong token: exit %d, %q", code, errb.String())
	}
}

func TestStatusCommandShowsOrigins(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer origin.Close()
	node, err := edge.Start(snapshot.Spec{Version: "v7", Sites: []snapshot.SiteSpec{{
		Name: "shop", Hosts: []string{"*"},
		Pools: []snapshot.PoolSpec{
			{Name: "primary", Origins: []snapshot.OriginSpec{{URL: origin.URL}},
				HealthCheck: &snapshot.HealthCheckSpec{Path: "/", Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond}},
			{Name: "fallback", Origins: []snapshot.OriginSpec{{URL: "http://127.0.0.1:1"}}},
		},
	}}}, edge.Options{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", AdminToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		node.Shutdown(ctx)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var out, errb bytes.Buffer
		if code := run([]string{"status", "--admin", node.AdminAddr.String(), "--token", "tok"}, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		s := out.String()
		if strings.Contains(s, "ago ok") {
			for _, want := range []string{"configuration v7", "site shop", "primary", "fallback", origin.URL, "healthy", "cache:"} {
				if !strings.Contains(s, want) {
					t.Fatalf("status lacks %q:\n%s", want, s)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no health check shown:\n%s", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
