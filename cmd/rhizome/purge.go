package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"rhizome/internal/admin"
	"rhizome/internal/bytesize"
	"rhizome/internal/node"
	"rhizome/internal/stages"
)

// adminClient holds the flags every admin command shares.
type adminClient struct {
	addr, token, dataDir *string
}

func addAdminFlags(fs interface {
	String(name, value, usage string) *string
}) adminClient {
	return adminClient{
		addr:    fs.String("admin", "127.0.0.1:9090", "the node's admin API address"),
		token:   fs.String("token", os.Getenv("RHIZOME_ADMIN_TOKEN"), "admin bearer token (default: $RHIZOME_ADMIN_TOKEN, else read from --data-dir)"),
		dataDir: fs.String("data-dir", "", "the node's data dir, to read its admin token"),
	}
}

func (c adminClient) do(method, path string, body any, out any) error {
	token := *c.token
	if token == "" && *c.dataDir != "" {
		b, err := os.ReadFile(filepath.Join(*c.dataDir, admin.TokenFile))
		if err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return fmt.Errorf("--token: no admin token (set --token, RHIZOME_ADMIN_TOKEN or --data-dir)")
	}
	var rd io.Reader
	switch body := body.(type) {
	case nil:
	case rawBody:
		rd = bytes.NewReader(body)
	default:
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	addr := *c.addr
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	req, err := http.NewRequest(method, addr+path, rd)
	if err != nil {
		return fmt.Errorf("--admin %q: %w", *c.addr, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("admin API: %s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("admin API: %s", resp.Status)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// rawBody is a request body sent as it is (a signed bundle), not as JSON.
type rawBody []byte

func runPurge(args []string, stdout io.Writer) error {
	fs := newFlagSet("purge", os.Stderr)
	c := addAdminFlags(fs)
	var prefixes, tags listFlag
	fs.Var(&prefixes, "prefix", "purge every URL starting with this prefix (repeatable)")
	fs.Var(&tags, "tag", "purge every object carrying this Cache-Tag / Surrogate-Key (repeatable)")
	if err := parseFlags(fs, interleave(args)); err != nil {
		return err
	}
	req := admin.PurgeRequest{URLs: fs.Args(), Prefixes: prefixes, Tags: tags}
	var resp admin.PurgeResponse
	if err := c.do(http.MethodPost, "/v1/purge", req, &resp); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "purged %d objects\n", resp.Purged)
	return nil
}

func runStatus(args []string, stdout io.Writer) error {
	fs := newFlagSet("status", os.Stderr)
	c := addAdminFlags(fs)
	asJSON := fs.Bool("json", false, "print the admin API's JSON as it is")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.do(http.MethodGet, "/v1/status", nil, &raw); err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(append(raw, '\n'))
		return err
	}
	var st admin.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	printStatus(stdout, st, time.Now())
	return nil
}

// printStatus writes the status for people: one table of origins per site, then the cache.
func printStatus(w io.Writer, st admin.Status, now time.Time) {
	fmt.Fprintf(w, "configuration %s, up %s\n", st.Version, st.Uptime)
	if st.Bundle != nil {
		var ns node.State
		if b, err := json.Marshal(st.Bundle); err == nil && json.Unmarshal(b, &ns) == nil {
			printBundle(w, ns)
		}
	}
	for _, site := range st.Sites {
		fmt.Fprintf(w, "\nsite %s (hosts %s, cache %v)\n", site.Name, strings.Join(site.Hosts, " "), onOff(site.Cache))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  POOL\tORIGIN\tSTATE\tLATENCY\tIN FLIGHT\tREQUESTS\tERRORS 1m\tLAST CHECK")
		for _, g := range st.Upstreams {
			if g.Key != site.Name {
				continue
			}
			for _, p := range g.Pools {
				for _, o := range p.Origins {
					state := o.State
					if o.EjectedUntil != nil {
						state += fmt.Sprintf(" (%s left)", o.EjectedUntil.Sub(now).Round(time.Second))
					}
					check := "-"
					if o.LastCheck != nil {
						check = fmt.Sprintf("%s ago ", now.Sub(*o.LastCheck).Round(100*time.Millisecond))
						if o.LastCheckOK {
							check += "ok"
						} else {
							check += "failed: " + o.LastCheckError
						}
					}
					fmt.Fprintf(tw, "  %s\t%s\t%s\t%.1fms\t%d\t%d\t%.1f%%\t%s\n", p.Name, o.URL, state,
						o.LatencyEWMAms, o.Inflight, o.Requests, 100*o.ErrorRate, check)
				}
			}
		}
		tw.Flush()
	}
	if c := st.Cache; c != nil {
		fmt.Fprintf(w, "\ncache: %d objects in memory (%s), %d on disk (%s); %d hits, %d misses, %d evicted, %d purged\n",
			c.MemoryObjects, bytesize.Format(c.MemoryBytes), c.DiskObjects, bytesize.Format(c.DiskBytes), c.Hits, c.Misses, c.Evictions, c.Purged)
	}
}

// printBundle writes a mesh node's bundle state.
func printBundle(w io.Writer, ns node.State) {
	fmt.Fprintf(w, "node %s (region %s, provider %s), trusts %d keys, needs %d signatures\n", ns.Node, ns.Region, ns.Provider, len(ns.Trust.Keys), ns.Trust.Required)
	if a := ns.Active; a != nil {
		fmt.Fprintf(w, "active bundle: serial %d, %s, signed by %s, activated %s\n", a.Serial, a.Hash[:16], strings.Join(a.Signers, ", "), a.Activated.Format(time.RFC3339))
	} else {
		fmt.Fprintln(w, "active bundle: none (every request gets 421 until one is pushed)")
	}
	if d := ns.DNS; d != nil {
		fmt.Fprintf(w, "dns: %d queries, %d refused, %d nxdomain, %d nodata, %d truncated, %d rate-limited, %d answered fail-open (no node qualified)\n",
			d.Queries, d.Refused, d.NXDomain, d.NoData, d.Truncated, d.RateLimited, d.FailOpen)
	}
	if ns.Draining {
		fmt.Fprintln(w, "draining: out of DNS answers (rhizome drain off puts it back)")
	}
	if p := ns.Pending; p != nil {
		fmt.Fprintf(w, "held bundle: serial %d, %s, wave %d: %s\n", p.Serial, p.Hash[:16], p.Wave, p.Waiting)
	}
	if r := ns.Rollout; r != nil && r.Watch.Bundle != "" && !r.Watch.Healthy {
		fmt.Fprintf(w, "this node was UNHEALTHY on %s: %s\n", r.Watch.Bundle[:16], r.Watch.Reason)
	}
	peers := map[string]node.PeerState{}
	for _, p := range ns.Peers {
		peers[p.Name] = p
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(ns.Members) > 0 {
		fmt.Fprintln(tw, "MEMBER\tADDR\tSTATE\tREGION\tPROVIDER\tSERIAL\tHEALTH\tREQUESTS\tNODE ERRORS")
	}
	for _, m := range ns.Members {
		serial, health, reqs, errs := "-", "-", "-", "-"
		if p, ok := peers[m.Name]; ok && p.Bundle != "" {
			serial, health = fmt.Sprint(p.Serial), "unhealthy"
			if p.Healthy {
				health = "healthy"
			}
			if p.Draining {
				health += ", draining"
			}
			reqs, errs = fmt.Sprint(p.Figures[0]), fmt.Sprint(p.Figures[1])
		} else if ok && p.Error != "" {
			health = "report refused: " + p.Error
		}
		if m.Name == ns.Node && ns.Active != nil {
			serial, health = fmt.Sprint(ns.Active.Serial), "this node"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Addr, m.State, m.Meta.Region, m.Meta.Provider, serial, health, reqs, errs)
	}
	tw.Flush()
	for _, s := range ns.KillSwitches {
		site := s.Site
		if site == "" {
			site = "all sites"
		}
		fmt.Fprintf(w, "kill switch %s (%s): %s\n", s.Stage, site, onOff(s.On))
	}
	if sg := ns.Stages; sg != nil {
		printStages(w, sg)
	}
	for _, r := range ns.Refused {
		fmt.Fprintf(w, "refused %s: serial %d: %s\n", r.Time.Format(time.RFC3339), r.Serial, r.Reason)
	}
}

// printStages writes the request stages' counters: what each stage did, and what the
// WAF and bot stages saw.
func printStages(w io.Writer, sg *node.StageState) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tRUNS\tBLOCKS\tERRORS\tTIMEOUTS\tPANICS\tBYPASSES\tSLOW")
	for _, name := range stages.Names {
		c, ok := sg.Driver[name]
		if !ok {
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", name, c.Runs, c.Blocks, c.Errors, c.Timeouts, c.Panics, c.Bypasses, c.Slow)
	}
	tw.Flush()
	fmt.Fprintf(w, "rate limiting: %d keys, %d blocked, %d logged\n", sg.RateLimit.Keys, sg.RateLimit.Blocked, sg.RateLimit.Logged)
	fmt.Fprintf(w, "waf: %d inspected, %d blocked, %d detected (detect-only), %d bodies over the limit\n", sg.WAF.Inspected, sg.WAF.Blocked, sg.WAF.Detected, sg.WAF.OverLimit)
	if len(sg.Bots) > 0 {
		classes := make([]string, 0, len(sg.Bots))
		for k := range sg.Bots {
			classes = append(classes, k)
		}
		sort.Strings(classes)
		var parts []string
		for _, k := range classes {
			c := sg.Bots[k]
			parts = append(parts, fmt.Sprintf("%s %d (%d verified, %d blocked)", k, c.Seen, c.Verified, c.Blocked))
		}
		fmt.Fprintf(w, "bots: %s\n", strings.Join(parts, "; "))
	}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// interleave moves flags before positional arguments, so that "purge URL --tag t" works
// as people type it (the flag package stops at the first positional argument).
func interleave(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, append([]string{"--"}, pos...)...)
}
