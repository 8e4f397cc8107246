package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"rhizome/internal/demo"
	"rhizome/internal/edge"
	"rhizome/internal/snapshot"
)

func runProxy(args []string, stderr io.Writer) error {
	fs := newFlagSet("proxy", stderr)
	var origins, trusted listFlag
	var mem, disk sizeFlag = 256 << 20, 1 << 30
	fs.Var(&origins, "origin", "origin URL (http or https); repeat for several, tried in turn")
	demoOrigin := fs.Bool("demo", false, "start a built-in sample origin on loopback and use it as the origin")
	listen := fs.String("listen", "127.0.0.1:8080", "address for client traffic (HTTP/1.1 and h2c)")
	adminAddr := fs.String("admin", "127.0.0.1:9090", `admin API address (purge, status); "off" to disable`)
	adminToken := fs.String("admin-token", os.Getenv("RHIZOME_ADMIN_TOKEN"), "admin bearer token (default: $RHIZOME_ADMIN_TOKEN, else DATA-DIR/admin.token, else random and logged)")
	dataDir := fs.String("data-dir", "", "directory for the disk cache and admin token; empty: a temporary directory removed at exit")
	fs.Var(&mem, "cache-memory", "memory cache tier bound (e.g. 256MiB)")
	fs.Var(&disk, "cache-disk", "disk cache tier bound (e.g. 10GiB)")
	noCache := fs.Bool("no-cache", false, "pass every request to the origin and store nothing")
	fs.Var(&trusted, "trusted-proxy", "CIDR whose X-Forwarded-For is believed; repeat for several (default: none)")
	originHost := fs.String("origin-host", "", "Host header sent to origins (default: the client's Host)")
	defaultTTL := fs.Duration("default-ttl", 0, "lifetime of 200 responses that carry no freshness information")
	alwaysOnline := fs.Duration("always-online", 0, "serve stale objects up to this long past expiry when origins fail (e.g. 168h)")
	accessLog := fs.Bool("access-log", true, "log one line per request")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "json", "json or text")
	check := fs.Bool("check", false, "check the flags and the resulting configuration, print what would be served, and exit (like nginx -t)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (origins go with --origin)", fs.Arg(0))
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	for i, o := range origins {
		if _, err := snapshot.ParseOriginURL(o); err != nil {
			return fmt.Errorf("--origin[%d]: %v", i, err)
		}
	}
	for i, t := range trusted {
		if _, err := snapshot.ParsePrefix(t); err != nil {
			return fmt.Errorf("--trusted-proxy[%d]: %v", i, err)
		}
	}
	if *demoOrigin && *check {
		origins = append(origins, "http://127.0.0.1:1") // stands for the sample origin's port
	} else if *demoOrigin {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("demo origin: %w", err)
		}
		o := demo.NewOrigin()
		go func() { _ = o.Serve(ln) }()
		origins = append(origins, "http://"+ln.Addr().String())
		log.Info("sample origin started", "url", "http://"+ln.Addr().String())
	}
	if len(origins) == 0 {
		return fmt.Errorf("--origin: at least one origin is required (or --demo for the built-in sample origin)")
	}
	site := snapshot.SiteSpec{
		Name:           "default",
		Hosts:          []string{"*"},
		OriginHost:     *originHost,
		TrustedProxies: trusted,
		Cache:          snapshot.CacheSpec{Disabled: *noCache, DefaultTTL: *defaultTTL, AlwaysOnline: *alwaysOnline},
	}
	for _, o := range origins {
		site.Origins = append(site.Origins, snapshot.OriginSpec{URL: o})
	}
	spec := snapshot.Spec{Version: "cli", Sites: []snapshot.SiteSpec{site}}
	if *check {
		if _, err := snapshot.Compile(spec); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "configuration ok: listen %s, admin %s, origins %v, cache memory %s disk %s\n",
			*listen, *adminAddr, []string(origins), mem.String(), disk.String())
		return nil
	}
	node, err := edge.Start(spec, edge.Options{
		Listen: *listen, AdminListen: *adminAddr, DataDir: *dataDir,
		CacheMemory: int64(mem), CacheDisk: int64(disk), NoCache: *noCache,
		AdminToken: *adminToken, AccessLog: *accessLog, Logger: log,
	})
	if err != nil {
		return err
	}
	attrs := []any{"listen", node.Addr.String(), "origins", []string(origins)}
	if node.AdminAddr != nil {
		attrs = append(attrs, "admin", node.AdminAddr.String())
		if *adminToken == "" && *dataDir == "" {
			attrs = append(attrs, "admin_token", node.Token)
		}
	}
	log.Info("rhizome proxy serving", attrs...)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case err := <-node.Err():
		log.Error("listener failed", "err", err)
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return node.Shutdown(sctx)
}
