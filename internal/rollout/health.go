package rollout

import (
	"fmt"
	"math"
	"strings"
)

// Counters are a node's figures since it activated a bundle.
type Counters struct {
	Requests      uint64
	NodeErrors    uint64 // 5xx the node caused itself (not its origins), panics included
	Panics        uint64
	StageFailures uint64 // security stages that failed and were bypassed
}

// Sub returns c - base field by field, clamped at 0: a counter below its base means the
// process restarted, and a huge wrapped-around figure would condemn a healthy node.
func (c Counters) Sub(base Counters) Counters {
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return Counters{
		Requests:      sub(c.Requests, base.Requests),
		NodeErrors:    sub(c.NodeErrors, base.NodeErrors),
		Panics:        sub(c.Panics, base.Panics),
		StageFailures: sub(c.StageFailures, base.StageFailures),
	}
}

// Judge says whether counters make a node unhealthy on a bundle, with p.WithDefaults().
// Failures are NodeErrors + StageFailures; the node is unhealthy when failures reach
// MinErrors and failures*100 >= MaxErrorPercent*Requests (so with no requests at all, enough
// failures are unhealthy). reason is a short sentence for status and logs, "" when healthy.
func (p Plan) Judge(c Counters) (healthy bool, reason string) {
	p = p.WithDefaults()
	// Guard hand-built plans that Validate would refuse: they must not make Judge lenient.
	minErrors := uint64(max(p.MinErrors, 1))
	limit := p.MaxErrorPercent
	if !validShare(limit) {
		limit = DefaultMaxErrorPercent
	}
	failures := c.NodeErrors + c.StageFailures
	if failures < c.NodeErrors { // overflow: saturate rather than look healthy
		failures = math.MaxUint64
	}
	got := float64(failures) * 100
	allowed := limit * float64(c.Requests)
	if failures < minErrors || got < allowed {
		return true, ""
	}
	var b strings.Builder
	b.WriteString(plural(c.NodeErrors, "node error"))
	if c.Panics > 0 {
		fmt.Fprintf(&b, " (%s)", plural(c.Panics, "panic"))
	}
	fmt.Fprintf(&b, " and %s in %s", plural(c.StageFailures, "stage failure"), plural(c.Requests, "request"))
	if c.Requests > 0 {
		op := ">"
		if got == allowed {
			op = ">="
		}
		fmt.Fprintf(&b, " (%.1f%% %s %s%%)", got/float64(c.Requests), op, fmtFloat(limit))
	}
	return false, b.String()
}

func plural(n uint64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
