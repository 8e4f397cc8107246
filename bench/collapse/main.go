// Command collapse fires many concurrent GET requests for one URL, all
// released at the same instant, and reports how they were answered. With
// bench/collapse.sh it shows that a cold key reaches the origin once however
// many clients ask for it at the same time (request collapsing).
//
// It exits non-zero if any request fails or answers other than 200. It does
// not read the origin's counter: the calling script does that.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080/cold/x", "URL to request")
	n := flag.Int("n", 1000, "number of concurrent requests")
	timeout := flag.Duration("timeout", 30*time.Second, "timeout of each request")
	flag.Parse()

	client := &http.Client{
		Timeout: *timeout,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: *n,
			DisableCompression:  true,
		},
	}

	type result struct {
		status      int
		cacheStatus string
		err         error
		took        time.Duration
	}
	results := make([]result, *n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range *n {
		wg.Go(func() {
			<-start
			t0 := time.Now()
			resp, err := client.Get(*url)
			if err != nil {
				results[i] = result{err: err, took: time.Since(t0)}
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results[i] = result{status: resp.StatusCode, cacheStatus: resp.Header.Get("Cache-Status"), err: err, took: time.Since(t0)}
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)

	outcomes := map[string]int{}
	failed := 0
	var slowest time.Duration
	for _, r := range results {
		slowest = max(slowest, r.took)
		switch {
		case r.err != nil:
			failed++
			outcomes["error: "+r.err.Error()]++
		case r.status != http.StatusOK:
			failed++
			outcomes[fmt.Sprintf("status %d", r.status)]++
		default:
			cs := r.cacheStatus
			if cs == "" {
				cs = "(none)"
			}
			outcomes["200, Cache-Status: "+cs]++
		}
	}
	keys := make([]string, 0, len(outcomes))
	for k := range outcomes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Printf("%d concurrent requests for %s in %v (slowest %v)\n", *n, *url, elapsed.Round(time.Millisecond), slowest.Round(time.Millisecond))
	for _, k := range keys {
		fmt.Printf("  %5d  %s\n", outcomes[k], k)
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "collapse: %d of %d requests failed\n", failed, *n)
		os.Exit(1)
	}
}
