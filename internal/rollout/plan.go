package rollout

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Limits and defaults of a Plan. A value past a limit is a validation error, never a crash.
const (
	MaxWaves               = 10              // waves in a plan; more is a typo, not a rollout
	MaxWaveNodes           = 10000           // largest Wave.Nodes; a mesh larger than this uses percent
	MaxBake                = 24 * time.Hour  // upper bound of a bake and of the watch window
	DefaultWatch           = 5 * time.Minute // long enough for a bad config to show in counters
	DefaultMaxErrorPercent = 1.0             // 1% of requests failing by the node's own fault
	DefaultMinErrors       = 5               // so that one error in the first few requests is not a verdict
	maxMinErrors           = 1000000         // a MinErrors above this would never trigger
)

// Wave is one step of a rollout. Exactly one of Nodes or Percent is set; both are cumulative
// targets: "percent: 50" means that after this wave half of the nodes run the bundle.
type Wave struct {
	Nodes   int           // absolute number of nodes, 1..MaxWaveNodes
	Percent float64       // share of nodes, (0, 100]
	Bake    time.Duration // how long this wave must run healthy before the next starts, 0..MaxBake
}

// Plan is the rollout section of a bundle. Zero fields mean "use the default", so an empty
// Plan is valid and rolls out to every node at once.
type Plan struct {
	Waves           []Wave        // empty means one wave of 100% with no bake (DefaultPlan)
	Watch           time.Duration // how long a node judges its own health after activating a bundle; 0 = DefaultWatch
	MaxErrorPercent float64       // node-caused error share (percent of requests) that makes a node unhealthy; 0 = DefaultMaxErrorPercent
	MinErrors       int           // failures needed before the share counts at all; 0 = DefaultMinErrors
}

// DefaultPlan returns the plan of a bundle that says nothing about rollout: every node at
// once, with default health thresholds.
func DefaultPlan() Plan { return Plan{}.WithDefaults() }

// WithDefaults returns p with zero fields filled. The returned Waves is a fresh slice, so the
// caller may modify it without touching p's.
func (p Plan) WithDefaults() Plan {
	if len(p.Waves) == 0 {
		p.Waves = []Wave{{Percent: 100}}
	} else {
		p.Waves = append([]Wave(nil), p.Waves...)
	}
	if p.Watch == 0 {
		p.Watch = DefaultWatch
	}
	if p.MaxErrorPercent == 0 {
		p.MaxErrorPercent = DefaultMaxErrorPercent
	}
	if p.MinErrors == 0 {
		p.MinErrors = DefaultMinErrors
	}
	return p
}

// Validate checks the plan as written, before defaults: zero fields and an empty Waves list
// are fine. It returns every problem joined, each prefixed with its path under the
// top-level "rollout:" key so that an operator can find it in the YAML.
func (p Plan) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("rollout.%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if len(p.Waves) > MaxWaves {
		add("waves", "%d waves exceed the limit of %d", len(p.Waves), MaxWaves)
	}
	maxNodes, maxPercent := 0, 0.0 // largest valid target so far, to enforce cumulative order
	for i, w := range p.Waves {
		at := fmt.Sprintf("waves[%d]", i)
		switch {
		case w.Nodes != 0 && w.Percent != 0:
			add(at, "set one of nodes or percent, not both")
		case w.Nodes == 0 && w.Percent == 0:
			add(at, "set one of nodes or percent")
		}
		if w.Nodes != 0 {
			switch {
			case w.Nodes < 1 || w.Nodes > MaxWaveNodes:
				add(at+".nodes", "%d: want a count in [1, %d]", w.Nodes, MaxWaveNodes)
			case w.Nodes < maxNodes:
				add(at+".nodes", "%d is below the %d of an earlier wave (targets are cumulative)", w.Nodes, maxNodes)
			default:
				maxNodes = w.Nodes
			}
		}
		if w.Percent != 0 {
			switch {
			case !validShare(w.Percent):
				add(at+".percent", "%s: want a share in (0, 100]", fmtFloat(w.Percent))
			case w.Percent < maxPercent:
				add(at+".percent", "%s is below the %s of an earlier wave (targets are cumulative)", fmtFloat(w.Percent), fmtFloat(maxPercent))
			default:
				maxPercent = w.Percent
			}
		}
		if err := checkDuration(w.Bake); err != nil {
			add(at+".bake", "%v", err)
		}
	}
	if n := len(p.Waves); n > 0 && p.Waves[n-1].Percent != 100 {
		// Without this a plan could strand part of the mesh on the old bundle forever.
		add(fmt.Sprintf("waves[%d]", n-1), "the last wave must reach percent: 100 (every node)")
	}
	if err := checkDuration(p.Watch); err != nil {
		add("watch", "%v", err)
	}
	if p.MaxErrorPercent != 0 && !validShare(p.MaxErrorPercent) {
		add("max_error_percent", "%s: want a share in (0, 100]", fmtFloat(p.MaxErrorPercent))
	}
	if p.MinErrors != 0 && (p.MinErrors < 1 || p.MinErrors > maxMinErrors) {
		add("min_errors", "%d: want a count in [1, %d]", p.MinErrors, maxMinErrors)
	}
	return errors.Join(errs...)
}

func validShare(f float64) bool { return f > 0 && f <= 100 } // false for NaN too

func checkDuration(d time.Duration) error {
	switch {
	case d < 0:
		return fmt.Errorf("%v: must not be negative", d)
	case d > MaxBake:
		return fmt.Errorf("%v exceeds the limit of %v", d, MaxBake)
	}
	return nil
}

// fmtFloat prints a share the way the operator wrote it: 50, 12.5, not 50.000000.
func fmtFloat(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Sprint(f)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
