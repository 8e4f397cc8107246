package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"rhizome/internal/demo"
	"rhizome/internal/edge"
	"rhizome/internal/snapshot"
	"rhizome/internal/upstream"
)

func runProxy(args []string, stderr io.Writer) error {
	fs := newFlagSet("proxy", stderr)
	var origins, fallbacks, trusted, retryMethods listFlag
	var mem, disk sizeFlag = 256 << 20, 1 << 30
	fs.Var(&origins, "origin", "origin URL (http or https), optionally \",weight=N\" (1..100); repeat for several")
	fs.Var(&fallbacks, "fallback", "origin of the fallback pool, used only when no --origin is available; same form, repeatable")
	healthPath := fs.String("health-path", "", "path of active health checks (e.g. /healthz); empty: no active checks, passive detection only")
	healthMethod := fs.String("health-method", "GET", "method of health checks")
	healthHost := fs.String("health-host", "", "Host header of health checks (default: the origin's host)")
	healthStatus := fs.String("health-status", fmt.Sprintf("%d-%d", upstream.DefaultCheckStatusMin, upstream.DefaultCheckStatusMax), "expected status of health checks: a code or a range")
	healthBody := fs.String("health-body", "", "substring the health check body must contain")
	healthInterval := fs.Duration("health-interval", upstream.DefaultCheckInterval, "time between health checks of an origin")
	healthTimeout := fs.Duration("health-timeout", 0, "timeout of one health check (default 1s, or half the interval if that is shorter)")
	healthRise := fs.Int("health-rise", upstream.DefaultCheckRise, "successful checks in a row that mark an origin up")
	healthFall := fs.Int("health-fall", upstream.DefaultCheckFall, "failed checks in a row that mark an origin down")
	connectTimeout := fs.Duration("connect-timeout", snapshot.DefaultConnectTimeout, "timeout to connect to an origin")
	firstByteTimeout := fs.Duration("first-byte-timeout", snapshot.DefaultFirstByteTimeout, "timeout from request sent to the origin's response headers")
	idleTimeout := fs.Duration("idle-timeout", snapshot.DefaultIdleTimeout, "timeout between two reads of an origin's body")
	totalTimeout := fs.Duration("total-timeout", 0, "timeout of a whole origin exchange, body included (0: none)")
	attempts := fs.Int("attempts", snapshot.DefaultAttempts, "tries of one request on different origins, the first included (1: no retries)")
	retryBudget := fs.Float64("retry-budget", snapshot.DefaultRetryBudget, "retries may add at most this percentage to the requests")
	fs.Var(&retryMethods, "retry-method", "a method besides GET, HEAD and OPTIONS that is safe to retry (e.g. PUT); repeatable")
	ejectAfter := fs.Int("eject-after", upstream.DefaultConsecutiveFailures, "failures in a row that take an origin out of rotation (-1: never)")
	ejectTime := fs.Duration("eject-time", upstream.DefaultBaseEjection, "first ejection; doubles each time an origin is ejected again")
	ejectMax := fs.Duration("eject-max", upstream.DefaultMaxEjection, "longest ejection")
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
	// Zero is refused rather than read as "the default": an operator who types 0 means
	// something, and it is not what the default does.
	switch {
	case *attempts < 1:
		return fmt.Errorf("--attempts: %d out of range 1..%d (1: no retries)", *attempts, snapshot.MaxAttempts)
	case *ejectAfter == 0 || *ejectAfter < -1:
		return fmt.Errorf("--eject-after: %d: give failures in a row (1..1000), or -1 to never eject", *ejectAfter)
	case !(*retryBudget > 0):
		return fmt.Errorf("--retry-budget: %v: give a percentage above 0 (--attempts 1 turns retries off)", *retryBudget)
	}
	primary, err := parseOrigins("--origin", origins)
	if err != nil {
		return err
	}
	fallback, err := parseOrigins("--fallback", fallbacks)
	if err != nil {
		return err
	}
	for i, t := range trusted {
		if _, err := snapshot.ParsePrefix(t); err != nil {
			return fmt.Errorf("--trusted-proxy[%d]: %v", i, err)
		}
	}
	if *demoOrigin && *check {
		primary = append(primary, snapshot.OriginSpec{URL: "http://127.0.0.1:1"}) // stands for the sample origin
	} else if *demoOrigin {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("demo origin: %w", err)
		}
		o := demo.NewOrigin()
		go func() { _ = o.Serve(ln) }()
		primary = append(primary, snapshot.OriginSpec{URL: "http://" + ln.Addr().String()})
		log.Info("sample origin started", "url", "http://"+ln.Addr().String())
	}
	if len(primary) == 0 {
		return fmt.Errorf("--origin: at least one origin is required (or --demo for the built-in sample origin)")
	}
	site := snapshot.SiteSpec{
		Name:           "default",
		Hosts:          []string{"*"},
		OriginHost:     *originHost,
		TrustedProxies: trusted,
		Cache:          snapshot.CacheSpec{Disabled: *noCache, DefaultTTL: *defaultTTL, AlwaysOnline: *alwaysOnline},
		Timeouts:       snapshot.TimeoutSpec{Connect: *connectTimeout, FirstByte: *firstByteTimeout, Idle: *idleTimeout, Total: *totalTimeout},
		Retry:          snapshot.RetrySpec{Attempts: *attempts, BudgetPercent: *retryBudget, Methods: retryMethods},
		Outlier:        snapshot.OutlierSpec{ConsecutiveFailures: *ejectAfter, BaseEjection: *ejectTime, MaxEjection: *ejectMax},
	}
	var hc *snapshot.HealthCheckSpec
	if *healthPath != "" {
		hc = &snapshot.HealthCheckSpec{
			Path: *healthPath, Method: *healthMethod, Host: *healthHost, ExpectStatus: *healthStatus,
			BodyContains: *healthBody, Interval: *healthInterval, Timeout: *healthTimeout,
			Rise: *healthRise, Fall: *healthFall,
		}
	}
	site.Pools = []snapshot.PoolSpec{{Name: "primary", Origins: primary, HealthCheck: hc}}
	if len(fallback) > 0 {
		site.Pools = append(site.Pools, snapshot.PoolSpec{Name: "fallback", Origins: fallback, HealthCheck: hc})
	}
	spec := snapshot.Spec{Version: "cli", Sites: []snapshot.SiteSpec{site}}
	if _, err := snapshot.Compile(spec); err != nil {
		return flagErrors(err)
	}
	if *check {
		fmt.Fprintf(stderr, "configuration ok: listen %s, admin %s, origins %d primary + %d fallback, cache memory %s disk %s\n",
			*listen, *adminAddr, len(primary), len(fallback), mem.String(), disk.String())
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
	attrs := []any{"listen", node.Addr.String(), "origins", len(primary), "fallbacks", len(fallback)}
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

// parseOrigins reads --origin values of the form URL or URL,weight=N.
func parseOrigins(flag string, values []string) ([]snapshot.OriginSpec, error) {
	var out []snapshot.OriginSpec
	for i, v := range values {
		o := snapshot.OriginSpec{URL: v}
		if u, w, ok := strings.Cut(v, ",weight="); ok {
			n, err := strconv.Atoi(w)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: weight %q is not a number", flag, i, w)
			}
			o = snapshot.OriginSpec{URL: u, Weight: n}
		}
		if _, err := snapshot.ParseOriginURL(o.URL); err != nil {
			return nil, fmt.Errorf("%s[%d]: %v", flag, i, err)
		}
		if o.Weight != 0 && (o.Weight < 1 || o.Weight > snapshot.MaxOriginWeight) || strings.Contains(v, ",weight=") && o.Weight == 0 {
			return nil, fmt.Errorf("%s[%d]: weight %d out of range 1..%d", flag, i, o.Weight, snapshot.MaxOriginWeight)
		}
		out = append(out, o)
	}
	return out, nil
}

// flagErrors turns the field paths of the one-site configuration built from flags back into
// the flags an operator typed.
func flagErrors(err error) error {
	r := strings.NewReplacer( // at a position, the first listed match wins: specific ones first
		"sites[0].pools[0].health_check.expect_status", "--health-status",
		"sites[0].pools[0].health_check.body_contains", "--health-body",
		"sites[0].pools[0].health_check.", "--health-",
		"sites[0].pools[1].health_check.", "--health-",
		"sites[0].pools[0].origins", "--origin",
		"sites[0].pools[1].origins", "--fallback",
		"sites[0].timeouts.first_byte", "--first-byte-timeout",
		"sites[0].timeouts.connect", "--connect-timeout",
		"sites[0].timeouts.idle", "--idle-timeout",
		"sites[0].timeouts.total", "--total-timeout",
		"sites[0].retry.attempts", "--attempts",
		"sites[0].retry.budget_percent", "--retry-budget",
		"sites[0].retry.methods", "--retry-method",
		"sites[0].outlier.consecutive_failures", "--eject-after",
		"sites[0].outlier.base_ejection", "--eject-time",
		"sites[0].outlier.max_ejection", "--eject-max",
		"sites[0].cache.default_ttl", "--default-ttl",
		"sites[0].cache.always_online", "--always-online",
	)
	return fmt.Errorf("%s", r.Replace(err.Error()))
}
