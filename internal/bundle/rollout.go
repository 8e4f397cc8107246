package bundle

import (
	"time"

	"rhizome/internal/rollout"
)

// Rollout is a bundle's rollout plan: rollout.Plan as operators write it. Absent, the
// bundle goes to every node at once (one wave of 100%), which `rhizome validate` warns
// about; each node still watches its own health on it and one unhealthy report rolls it
// back everywhere.
type Rollout struct {
	Waves           []Wave   `yaml:"waves" json:"waves,omitempty"`                         // in order; cumulative targets; the last must be percent: 100
	Watch           Duration `yaml:"watch" json:"watch,omitempty"`                         // how long each node judges its health on the bundle; default 5m
	MaxErrorPercent float64  `yaml:"max_error_percent" json:"max_error_percent,omitempty"` // node-caused errors that make a node unhealthy; default 1
	MinErrors       int      `yaml:"min_errors" json:"min_errors,omitempty"`               // ...once there are at least this many; default 5
}

// Wave is one step of a rollout: rollout.Wave.
type Wave struct {
	Nodes   int      `yaml:"nodes" json:"nodes,omitempty"`     // this many nodes in all, or
	Percent float64  `yaml:"percent" json:"percent,omitempty"` // this share of the nodes in all
	Bake    Duration `yaml:"bake" json:"bake,omitempty"`       // healthy time before the next wave starts
}

// Plan returns the bundle's rollout plan (rollout.DefaultPlan when it has none), with
// defaults filled.
func (c *Config) Plan() rollout.Plan {
	if c == nil || c.Rollout == nil {
		return rollout.DefaultPlan()
	}
	return c.Rollout.plan().WithDefaults()
}

// plan converts the section as written (zero fields stay zero).
func (r *Rollout) plan() rollout.Plan {
	p := rollout.Plan{Watch: time.Duration(r.Watch), MaxErrorPercent: r.MaxErrorPercent, MinErrors: r.MinErrors}
	for _, w := range r.Waves {
		p.Waves = append(p.Waves, rollout.Wave{Nodes: w.Nodes, Percent: w.Percent, Bake: time.Duration(w.Bake)})
	}
	return p
}

// planErr validates the written plan (zero fields are defaults).
func (c *Config) planErr() error {
	if c.Rollout == nil {
		return nil
	}
	return c.Rollout.plan().Validate()
}
