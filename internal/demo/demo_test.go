package demo

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestNov18 runs `rhizome demo --scenario nov18 --headless` in process: five nodes on
// loopback, the five steps, and the scorecard, which must say the network survived.
func TestNov18(t *testing.T) {
	if testing.Short() {
		t.Skip("the scenario takes about 40 s")
	}
	before := runtime.NumGoroutine()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sc, err := Nov18(ctx, Options{Out: &out}, false)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !sc.Passed {
		t.Fatalf("the network did not survive:\n%s", out.String())
	}
	for _, want := range []string{"REFUSED bundle 2", "rolled back from bundle 3", "scorecard", "the network survived."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if len(sc.BadRanOn) != 1 || sc.Counts.Failed != 0 || sc.Counts.Sent < 500 {
		t.Errorf("scorecard %+v", sc)
	}
	// Everything stopped: no goroutines left behind (a few of the runtime's and the HTTP
	// client's idle ones may linger briefly).
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+10 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+10 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// TestDemoServes: a started demo answers on its site, its dashboard, its status and its
// metrics, and Close removes its files.
func TestDemoServes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := Start(ctx, Options{Nodes: 3, Rate: 20})
	if err != nil {
		t.Fatal(err)
	}
	dir := m.dir
	get := func(url string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			if hdr[i] == "Host" {
				req.Host = hdr[i+1]
				continue
			}
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(m.SiteURL(1), "Host", Site, "User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36", "Accept", "text/html", "Accept-Language", "en"); code != 200 || !strings.Contains(body, "sample origin") {
		t.Fatalf("site: %d %q", code, body)
	}
	if code, body := get(m.SiteURL(2)+"robots.txt", "Host", Site); code != 200 || !strings.Contains(body, "User-agent: GPTBot") {
		t.Fatalf("robots.txt: %d %q", code, body)
	}
	admin := "http://" + m.Members[0].Node.Edge.AdminAddr.String()
	if code, body := get(admin + "/dashboard/"); code != 200 || !strings.Contains(body, "<html") {
		t.Fatalf("dashboard: %d", code)
	}
	if code, body := get(admin+"/v1/status", "Authorization", "Bearer "+m.Members[0].Node.Edge.Token); code != 200 || !strings.Contains(body, `"members"`) {
		t.Fatalf("status: %d %.200s", code, body)
	}
	time.Sleep(time.Second)
	if code, body := get(admin + "/metrics"); code != 200 || !strings.Contains(body, `rhizome_mesh_members{state="alive"} 3`) {
		t.Fatalf("metrics: %d", code)
	}
	if c := m.Traffic.Counts(); c.Sent == 0 || c.Failed != 0 {
		t.Fatalf("traffic: %+v", c)
	}
	m.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("demo dir %s left behind: %v", dir, err)
	}
}
