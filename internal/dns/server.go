package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

const (
	// maxTCPConns bounds the TCP connections served at once; more wait to be accepted.
	maxTCPConns = 1000
	// readUDPSize is the read buffer of UDP queries: more than any sane query needs.
	readUDPSize = 4096
	// bindTries is how often Start retries port 0 to find a port free for UDP and TCP.
	bindTries = 20
)

// Config configures a Server.
type Config struct {
	// Steerer chooses the addresses of proxied names; nil: proxied names answer NODATA.
	Steerer Steerer
	// Logger receives errors and debug events; nil: slog.Default().
	Logger *slog.Logger
	// RateLimit is the UDP responses per second per client /24 (IPv4) or /56 (IPv6),
	// with a burst of as many, before responses slip: over the limit, every other
	// response is an empty TC=1 reply (a real resolver retries over TCP, a spoofed victim
	// gets nothing bigger than the query) and the others are dropped. It is the defence
	// against reflection and amplification. 0 means 100; negative disables. TCP is never
	// limited.
	RateLimit int
}

// Stats counts what a Server did since it was made.
type Stats struct {
	Queries     uint64 `json:"queries"`      // queries received, malformed ones included
	Refused     uint64 `json:"refused"`      // REFUSED: not in a served zone (or no zones), class, AXFR
	NXDomain    uint64 `json:"nxdomain"`     // names that do not exist
	NoData      uint64 `json:"nodata"`       // names that exist without the type asked
	FailOpen    uint64 `json:"fail_open"`    // answers where the Steerer found no qualifying node
	Truncated   uint64 `json:"truncated"`    // responses sent with TC=1 because they did not fit
	RateLimited uint64 `json:"rate_limited"` // responses slipped or dropped by the rate limit
}

// Server is an authoritative DNS server over UDP and TCP on one address. Its methods are
// safe for concurrent use.
type Server struct {
	zones atomic.Pointer[Zones]
	steer Steerer
	log   *slog.Logger
	rl    *rateLimiter // nil: no rate limit

	stats struct {
		queries, refused, nxdomain, nodata, failOpen, truncated, rateLimited atomic.Uint64
	}

	mu       sync.Mutex
	udp, tcp *dns.Server   // nil when not serving (udp also when fast serves UDP)
	fast     *udpLoop      // UDP on a socket bound to one address
	served   chan struct{} // closed when both serving goroutines returned
	addr     string
}

// NewServer returns a server of zones z (nil: none, everything is REFUSED until Swap).
// It serves nothing until Start.
func NewServer(z *Zones, cfg Config) *Server {
	s := &Server{steer: cfg.Steerer, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	switch {
	case cfg.RateLimit == 0:
		s.rl = newRateLimiter(defaultRateLimit)
	case cfg.RateLimit > 0:
		s.rl = newRateLimiter(cfg.RateLimit)
	}
	s.zones.Store(z)
	return s
}

// Swap replaces the zones atomically: queries answered after it returns see z. nil
// means no zones: everything is REFUSED.
func (s *Server) Swap(z *Zones) { s.zones.Store(z) }

// Start binds UDP and TCP on addr ("host:port"; port 0 picks a port free for both) and
// serves in the background until Shutdown. It returns once both sockets are serving.
func (s *Server) Start(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcp != nil {
		return fmt.Errorf("already serving on %s", s.addr)
	}
	pc, ln, err := listen(addr) // net's errors name the address
	if err != nil {
		return err
	}
	h := handler{s}
	tcp := &dns.Server{Listener: newLimitListener(ln, maxTCPConns), Handler: h,
		MsgAcceptFunc: s.accept, MsgInvalidFunc: s.invalid}
	servers := []*dns.Server{tcp}
	var udp *dns.Server
	var fast *udpLoop
	if uc, ok := pc.(*net.UDPConn); ok && !uc.LocalAddr().(*net.UDPAddr).IP.IsUnspecified() {
		fast = &udpLoop{s: s, pc: uc}
	} else {
		udp = &dns.Server{PacketConn: pc, Handler: h, UDPSize: readUDPSize,
			MsgAcceptFunc: s.accept, MsgInvalidFunc: s.invalid}
		servers = append(servers, udp)
	}
	started := make(chan struct{}, 2)
	errs := make(chan error, 2)
	served := make(chan struct{})
	var wg sync.WaitGroup
	for _, srv := range servers {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				errs <- err
			}
		}()
	}
	go func() { wg.Wait(); close(served) }()
	for range servers {
		select {
		case <-started:
		case err := <-errs:
			for _, srv := range servers {
				_ = srv.Shutdown()
			}
			pc.Close()
			ln.Close()
			return fmt.Errorf("serve %s: %w", pc.LocalAddr(), err)
		}
	}
	// A serving goroutine that fails later (it should not) is logged.
	go func() {
		for err := range errs {
			s.log.Error("DNS serving stopped", "addr", pc.LocalAddr().String(), "err", err)
		}
	}()
	go func() { <-served; close(errs) }()
	if fast != nil {
		fast.start()
	}
	s.udp, s.fast, s.tcp, s.served, s.addr = udp, fast, tcp, served, pc.LocalAddr().String()
	return nil
}

// listen binds UDP and TCP on addr; with port 0, on one port free for both.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	tries := 1
	if port == "0" {
		tries = bindTries
	}
	for try := 1; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		bound := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		ln, err := net.Listen("tcp", net.JoinHostPort(host, bound))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if try >= tries {
			return nil, nil, err
		}
	}
}

// Addr is the address the server serves on ("127.0.0.1:5353"), "" when not serving.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Shutdown stops serving and releases the sockets, waiting for the queries in flight
// until ctx is done. Shutting down a server that does not serve does nothing.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	udp, fast, tcp, served := s.udp, s.fast, s.tcp, s.served
	s.udp, s.fast, s.tcp, s.served, s.addr = nil, nil, nil, nil, ""
	s.mu.Unlock()
	if tcp == nil {
		return nil
	}
	err := tcp.ShutdownContext(ctx)
	if udp != nil {
		err = errors.Join(err, udp.ShutdownContext(ctx))
	}
	if fast != nil {
		if cerr := fast.stop(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = errors.Join(err, cerr)
		}
	}
	select {
	case <-served:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("shut down DNS: %w", err)
	}
	return nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Queries:     s.stats.queries.Load(),
		Refused:     s.stats.refused.Load(),
		NXDomain:    s.stats.nxdomain.Load(),
		NoData:      s.stats.nodata.Load(),
		FailOpen:    s.stats.failOpen.Load(),
		Truncated:   s.stats.truncated.Load(),
		RateLimited: s.stats.rateLimited.Load(),
	}
}

// handler implements miekg's Handler, so that Server's method set stays free of it.
type handler struct{ s *Server }

func (h handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) { h.s.serve(w, req) }

// serve answers one parsed query: rate limit (UDP only), Answer, count, write.
func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	defer func() {
		if p := recover(); p != nil { // a Steerer's bug must not take the node down
			s.log.Error("panic answering a DNS query", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	s.stats.queries.Add(1)
	src, tcp := remote(w.RemoteAddr())
	if !tcp && s.rl != nil {
		switch s.rl.check(src) {
		case slip:
			s.stats.rateLimited.Add(1)
			s.write(w, slipReply(req))
			return
		case drop:
			s.stats.rateLimited.Add(1)
			return
		}
	}
	resp, out := answer(s.zones.Load(), s.steer, req, src, tcp)
	if resp == nil {
		return
	}
	switch {
	case resp.Rcode == dns.RcodeRefused:
		s.stats.refused.Add(1)
	case resp.Rcode == dns.RcodeNameError:
		s.stats.nxdomain.Add(1)
	case out.noData:
		s.stats.nodata.Add(1)
	}
	if out.failOpen {
		s.stats.failOpen.Add(1)
	}
	if resp.Truncated {
		s.stats.truncated.Add(1)
	}
	s.write(w, resp)
}

func (s *Server) write(w dns.ResponseWriter, m *dns.Msg) {
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("write DNS response", "client", w.RemoteAddr().String(), "err", err)
	}
}

// slipReply is the response of a slipped query: header and question, TC=1.
func slipReply(req *dns.Msg) *dns.Msg {
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Id: req.Id, Response: true, Opcode: req.Opcode,
		RecursionDesired: req.RecursionDesired, Truncated: true}}
	if len(req.Question) == 1 {
		m.Question = req.Question
	}
	return m
}

// remote returns a client's address and whether it came over TCP.
func remote(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap(), false
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// accept is miekg's default filter (responses ignored, opcodes other than QUERY and
// NOTIFY NOTIMP, malformed headers FORMERR), counting the queries it answers itself.
func (s *Server) accept(dh dns.Header) dns.MsgAcceptAction {
	a := dns.DefaultMsgAcceptFunc(dh)
	if a == dns.MsgReject || a == dns.MsgRejectNotImplemented {
		s.stats.queries.Add(1)
	}
	return a
}

// invalid logs a query that did not parse (miekg answers it FORMERR).
func (s *Server) invalid(m []byte, err error) {
	s.stats.queries.Add(1)
	s.log.Debug("malformed DNS query", "bytes", len(m), "err", err)
}

// limitListener accepts at most n connections at once.
type limitListener struct {
	net.Listener
	sem  chan struct{}
	done chan struct{}
	once sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
