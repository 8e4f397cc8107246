// Command loadgen is the open-loop load generator of bench/failover.sh.
//
// It sends GET requests at a constant rate for a fixed duration, each for a
// unique URL (the base URL followed by a counter, e.g. /pass/run-1-17) so
// that no proxy can answer from a cache and every request reaches an origin.
// The load is open-loop: request i is started at start + i/rate whatever
// happened to the earlier ones (one goroutine per request). At most
// --max-inflight requests are outstanding; a request due while the bound is
// reached is not sent and is counted as dropped.
//
// For every request it records when it started, its status or error, its
// latency (until the whole body is read) and the X-Origin response header
// (which origin answered; bench/origin sets it with --name). At the end it
// prints a JSON summary on stdout: counts, errors by kind, latency
// percentiles, and a timeline of per-second counts (by request start) per
// X-Origin value and per error kind. On stderr it prints the same figures as
// RESULT and TIMELINE lines for shell scripts:
//
//	RESULT start_unix_ns=N total=N ok=N errors=N status_5xx=N status_other=N timeout=N conn=N dropped=N slow=N p50_ms=F p99_ms=F max_ms=F ok_p99_ms=F
//	TIMELINE <series> n0,n1,...   (one line per X-Origin value and per error kind)
//
// Error kinds: status_5xx (an answer with status >= 500), status_other (any
// other status that is not 2xx or 3xx), timeout (no complete answer within
// --timeout), conn (connection refused or reset, EOF, any other transport
// error). Latency percentiles cover every request that was sent, errors
// included at the time they took (a timeout counts as --timeout). slow counts
// the successful answers that took longer than --slow.
//
// With --raw FILE it also writes one CSV line per request:
// offset_ms,latency_ms,status,origin,error_kind.
//
// It uses the standard library only.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Error kinds, as reported.
const (
	kindOK          = ""
	kind5xx         = "status_5xx"
	kindStatusOther = "status_other"
	kindTimeout     = "timeout"
	kindConn        = "conn"
)

// result is what one request ended with.
type result struct {
	offset  time.Duration // start, relative to the start of the run
	latency time.Duration
	status  int    // 0 if no answer
	origin  string // X-Origin of the answer, "" if none
	kind    string // one of the kind constants
}

// summary is the JSON printed at the end.
type summary struct {
	URL          string         `json:"url"`
	Rate         float64        `json:"rate"`
	Duration     string         `json:"duration"`
	Timeout      string         `json:"timeout"`
	StartUnixNs  int64          `json:"start_unix_ns"`
	Total        int            `json:"total"`
	OK           int            `json:"ok"`
	Errors       int            `json:"errors"`
	ErrorKinds   map[string]int `json:"error_kinds"`
	Dropped      int            `json:"dropped"`
	Slow         int            `json:"slow"`
	SlowOver     string         `json:"slow_over"`
	MaxInflight  int            `json:"max_inflight_seen"`
	LatencyMs    percentiles    `json:"latency_ms"`
	OKLatencyMs  percentiles    `json:"ok_latency_ms"`
	ByOrigin     map[string]int `json:"by_origin"`
	Timeline     []second       `json:"timeline"`
	FirstErrorAt *float64       `json:"first_error_s,omitempty"`
	LastErrorAt  *float64       `json:"last_error_s,omitempty"`
}

type percentiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// second is one second of the timeline, by request start.
type second struct {
	T       int            `json:"t"`
	Origins map[string]int `json:"origins"`
	Errors  map[string]int `json:"errors"`
}

func main() {
	base := flag.String("url", "http://127.0.0.1:8080/pass/", "base URL; a unique suffix is appended to it for each request")
	prefix := flag.String("prefix", "", "text put between the base URL and the counter (default: the start time), so that runs do not share URLs")
	rate := flag.Float64("rate", 300, "requests per second")
	duration := flag.Duration("duration", 20*time.Second, "how long to send")
	timeout := flag.Duration("timeout", 5*time.Second, "timeout of each request, until its body is read")
	maxInflight := flag.Int("max-inflight", 2000, "most requests outstanding at once; requests due beyond it are dropped and counted")
	slow := flag.Duration("slow", time.Second, "successful answers slower than this are counted as slow")
	raw := flag.String("raw", "", "if set, write one CSV line per request to this file")
	flag.Parse()
	if *rate <= 0 || *duration <= 0 || *timeout <= 0 || *maxInflight <= 0 {
		log.Fatal("loadgen: --rate, --duration, --timeout and --max-inflight must be positive")
	}
	if *prefix == "" {
		*prefix = fmt.Sprintf("%d-", time.Now().UnixNano())
	}

	client := &http.Client{
		Timeout: *timeout,
		Transport: &http.Transport{
			Proxy:               nil, // never an environment proxy: traffic stays on loopback
			DialContext:         (&net.Dialer{Timeout: *timeout}).DialContext,
			MaxIdleConns:        *maxInflight,
			MaxIdleConnsPerHost: *maxInflight,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	n := int(math.Round(*rate * duration.Seconds()))
	interval := time.Duration(float64(time.Second) / *rate)
	results := make([]result, 0, n)
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		dropped  int
		inflight int
		maxSeen  int
	)
	sem := make(chan struct{}, *maxInflight)

	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		select {
		case sem <- struct{}{}:
		default:
			mu.Lock()
			dropped++
			mu.Unlock()
			continue
		}
		mu.Lock()
		inflight++
		if inflight > maxSeen {
			maxSeen = inflight
		}
		mu.Unlock()
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := do(client, fmt.Sprintf("%s%s%d", *base, *prefix, i), start)
			<-sem
			mu.Lock()
			inflight--
			results = append(results, r)
			mu.Unlock()
		}(i)
	}
	wg.Wait()

	if *raw != "" {
		if err := writeRaw(*raw, results); err != nil {
			log.Printf("loadgen: %v", err)
		}
	}
	s := summarize(results, *duration, *slow)
	s.SlowOver = slow.String()
	s.URL, s.Rate, s.Duration, s.Timeout = *base, *rate, duration.String(), timeout.String()
	s.StartUnixNs = start.UnixNano()
	s.Dropped, s.MaxInflight = dropped, maxSeen

	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		log.Fatalf("loadgen: %v", err)
	}
	printShell(os.Stderr, s)
}

// do sends one request and classifies how it ended.
func do(client *http.Client, url string, start time.Time) result {
	t0 := time.Now()
	r := result{offset: t0.Sub(start)}
	resp, err := client.Get(url)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.status = resp.StatusCode
		r.origin = resp.Header.Get("X-Origin")
	}
	r.latency = time.Since(t0)
	switch {
	case err != nil && isTimeout(err):
		r.kind = kindTimeout
	case err != nil:
		r.kind = kindConn
	case r.status >= 500:
		r.kind = kind5xx
	case r.status >= 400 || r.status < 200:
		r.kind = kindStatusOther
	default:
		r.kind = kindOK
	}
	return r
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func summarize(results []result, duration, slow time.Duration) summary {
	sort.Slice(results, func(i, j int) bool { return results[i].offset < results[j].offset })
	secs := int(math.Ceil(duration.Seconds()))
	s := summary{
		Total:      len(results),
		ErrorKinds: map[string]int{kind5xx: 0, kindStatusOther: 0, kindTimeout: 0, kindConn: 0},
		ByOrigin:   map[string]int{},
		Timeline:   make([]second, secs),
	}
	for i := range s.Timeline {
		s.Timeline[i] = second{T: i, Origins: map[string]int{}, Errors: map[string]int{}}
	}
	all := make([]time.Duration, 0, len(results))
	ok := make([]time.Duration, 0, len(results))
	for _, r := range results {
		all = append(all, r.latency)
		sec := int(r.offset / time.Second)
		if sec >= secs {
			sec = secs - 1
		}
		t := &s.Timeline[sec]
		if r.status != 0 {
			o := r.origin
			if o == "" {
				o = "none"
			}
			if r.kind == kindOK {
				s.ByOrigin[o]++
				t.Origins[o]++
			}
		}
		if r.kind == kindOK {
			s.OK++
			ok = append(ok, r.latency)
			if r.latency > slow {
				s.Slow++
			}
			continue
		}
		s.Errors++
		s.ErrorKinds[r.kind]++
		t.Errors[r.kind]++
		at := r.offset.Seconds()
		if s.FirstErrorAt == nil {
			s.FirstErrorAt = &at
		}
		last := at
		s.LastErrorAt = &last
	}
	s.LatencyMs = percentilesOf(all)
	s.OKLatencyMs = percentilesOf(ok)
	return s
}

func percentilesOf(d []time.Duration) percentiles {
	if len(d) == 0 {
		return percentiles{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(d)))) - 1
		if i < 0 {
			i = 0
		}
		return ms(d[i])
	}
	return percentiles{P50: at(0.50), P99: at(0.99), Max: ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// printShell writes the RESULT and TIMELINE lines described in the package
// comment.
func printShell(w io.Writer, s summary) {
	fmt.Fprintf(w, "RESULT start_unix_ns=%d total=%d ok=%d errors=%d status_5xx=%d status_other=%d timeout=%d conn=%d dropped=%d slow=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f ok_p99_ms=%.2f\n",
		s.StartUnixNs, s.Total, s.OK, s.Errors, s.ErrorKinds[kind5xx], s.ErrorKinds[kindStatusOther],
		s.ErrorKinds[kindTimeout], s.ErrorKinds[kindConn], s.Dropped, s.Slow,
		s.LatencyMs.P50, s.LatencyMs.P99, s.LatencyMs.Max, s.OKLatencyMs.P99)
	origins := make([]string, 0, len(s.ByOrigin))
	for o := range s.ByOrigin {
		origins = append(origins, o)
	}
	sort.Strings(origins)
	series := func(name string, get func(second) int) {
		v := make([]string, len(s.Timeline))
		for i, t := range s.Timeline {
			v[i] = fmt.Sprint(get(t))
		}
		fmt.Fprintf(w, "TIMELINE %s %s\n", name, strings.Join(v, ","))
	}
	for _, o := range origins {
		series("origin="+o, func(t second) int { return t.Origins[o] })
	}
	series("errors", func(t second) int {
		n := 0
		for _, v := range t.Errors {
			n += v
		}
		return n
	})
	for _, k := range []string{kind5xx, kindStatusOther, kindTimeout, kindConn} {
		if s.ErrorKinds[k] > 0 {
			series("error="+k, func(t second) int { return t.Errors[k] })
		}
	}
}

func writeRaw(path string, results []result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	fmt.Fprintln(bw, "offset_ms,latency_ms,status,origin,error_kind")
	for _, r := range results {
		fmt.Fprintf(bw, "%.3f,%.3f,%d,%s,%s\n", float64(r.offset)/1e6, float64(r.latency)/1e6, r.status, r.origin, r.kind)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
