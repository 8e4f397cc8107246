package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"rhizome/internal/demo"
)

// runDemo starts a mesh on loopback with sample origins, a signed bundle and traffic, or
// replays a scenario. Ctrl-C stops everything and removes what it wrote.
func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodes := fs.Int("nodes", 5, "mesh nodes to start (1..20; the nov18 scenario needs at least 4)")
	rate := fs.Int("rate", 40, "synthetic requests per second")
	scenario := fs.String("scenario", "", `replay a failure: "nov18" (the outage of 18 November 2025)`)
	headless := fs.Bool("headless", false, "with --scenario: run it through, print the scorecard and exit (0: the network survived)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo: unexpected argument %q", fs.Arg(0))
	}
	if *nodes < 1 || *nodes > 20 {
		return fmt.Errorf("demo: --nodes %d: want 1..20", *nodes)
	}
	if *rate < 1 || *rate > 2000 {
		return fmt.Errorf("demo: --rate %d: want 1..2000", *rate)
	}
	if *headless && *scenario == "" {
		return errors.New("demo: --headless needs --scenario")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := demo.Options{Nodes: *nodes, Rate: *rate, Out: stdout}
	switch *scenario {
	case "":
	case "nov18":
		sc, err := demo.Nov18(ctx, opts, !*headless)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if !sc.Passed {
			return errors.New("demo: the network did not survive every step")
		}
		return nil
	default:
		return fmt.Errorf("demo: --scenario %q: the one scenario is nov18", *scenario)
	}
	m, err := demo.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer m.Close()
	dnsHost, dnsPort, _ := net.SplitHostPort(m.DNSAddr(0))
	fmt.Fprintf(stdout, `
rhizome demo: %d nodes, two origins (primary and backup), a signed bundle, traffic.
  dashboard   %s
  the site    curl -A 'Mozilla/5.0 Chrome/131.0 Safari/537.36' -H 'Accept: text/html' -H 'Accept-Language: en' -H 'Host: %s' %s
              (plain curl is a script: the demo's bot policy answers 403, detail=bots:automated)
  DNS         dig @%s -p %s %s
  robots.txt  curl -H 'Host: %s' %srobots.txt
Events follow as they happen. Ctrl-C stops everything and removes what the demo wrote.

`, len(m.Members), m.DashboardURL(0), demo.Site, m.SiteURL(0), dnsHost, dnsPort, demo.Site, demo.Site, m.SiteURL(0))
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping: traffic, nodes, origins...")
	return nil
}
