package demo

import (
	"maps"
	"sync"
	"time"

	"rhizome/internal/mesh"
)

// watcher prints what happens in the mesh as it happens: members joining and dying,
// bundles activating wave by wave, refusals, rollbacks, origins going down and up. It polls
// the nodes (every 100 ms), as an operator's status command would, rather than hooking
// into them: what it prints is what the nodes report.
type watcher struct {
	m    *Mesh
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	mu      sync.Mutex
	members map[string]string // member -> state, as the first live node sees it
	active  map[string]uint64 // node -> serial it runs
	held    map[string]uint64 // node -> serial it holds for its wave
	refused map[string]int    // node -> refusals seen
	origins map[string]string // origin URL -> state, as the first live node sees it
	halted  map[uint64]bool
	// ran records every (node, serial) ever seen active: the blast radius of a bundle.
	ran map[uint64]map[string]time.Time
	// back records when a node returned from a serial to an older one.
	back map[uint64]map[string]time.Time
}

func newWatcher(m *Mesh) *watcher {
	return &watcher{m: m, done: make(chan struct{}), members: map[string]string{}, active: map[string]uint64{},
		held: map[string]uint64{}, refused: map[string]int{}, origins: map[string]string{}, halted: map[uint64]bool{},
		ran: map[uint64]map[string]time.Time{}, back: map[uint64]map[string]time.Time{}}
}

func (w *watcher) start() { w.wg.Go(w.run) }

func (w *watcher) run() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		w.poll()
		select {
		case <-w.done:
			return
		case <-t.C:
		}
	}
}

func (w *watcher) stop() {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
}

func (w *watcher) poll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.m
	var observer *Member
	for _, mb := range m.Members {
		if mb.Killed() {
			continue
		}
		if observer == nil {
			observer = mb
		}
		st := mb.Node.State()
		if st.Active != nil && st.Active.Serial != w.active[mb.Name] {
			old := w.active[mb.Name]
			serial := st.Active.Serial
			w.active[mb.Name] = serial
			if w.ran[serial] == nil {
				w.ran[serial] = map[string]time.Time{}
			}
			if _, seen := w.ran[serial][mb.Name]; !seen {
				w.ran[serial][mb.Name] = time.Now()
			}
			switch {
			case old != 0 && serial < old:
				if w.back[old] == nil {
					w.back[old] = map[string]time.Time{}
				}
				w.back[old][mb.Name] = time.Now()
				m.printf("%s rolled back from bundle %d to bundle %d (its last good)", mb.Name, old, serial)
			case st.Active.Wave > 0:
				m.printf("%s runs bundle %d (wave %d)", mb.Name, serial, st.Active.Wave)
			default:
				m.printf("%s runs bundle %d", mb.Name, serial)
			}
		}
		if p := st.Pending; p != nil && w.held[mb.Name] != p.Serial {
			w.held[mb.Name] = p.Serial
			m.printf("%s holds bundle %d for wave %d: %s", mb.Name, p.Serial, p.Wave, p.Waiting)
		}
		if len(st.Refused) > w.refused[mb.Name] {
			for _, r := range st.Refused[w.refused[mb.Name]:] {
				m.printf("%s REFUSED bundle %d: %s", mb.Name, r.Serial, clip(r.Reason, 160))
			}
			w.refused[mb.Name] = len(st.Refused)
		}
		if r := st.Rollout; r != nil && r.Stopped != nil && !w.halted[r.Serial] && (r.State == "halted" || r.State == "rolled back") {
			w.halted[r.Serial] = true
			m.printf("rollout of bundle %d stopped everywhere (%s, as %s sees it)", r.Serial, r.State, mb.Name)
		}
	}
	if observer == nil {
		return
	}
	for _, mb := range observer.Node.Members() {
		old, known := w.members[mb.Name]
		if old == mb.State {
			continue
		}
		w.members[mb.Name] = mb.State
		switch {
		case !known && mb.State == mesh.StateAlive:
			m.printf("%s joined the mesh (%s, %s)", mb.Name, mb.Meta.Region, mb.Meta.Provider)
		case known:
			m.printf("%s is %s (as %s sees it)", mb.Name, mb.State, observer.Name)
		}
	}
	for _, g := range observer.Node.Edge.Proxy.Upstreams() {
		for _, p := range g.Pools {
			for _, o := range p.Origins {
				old, known := w.origins[o.URL]
				if old == o.State {
					continue
				}
				w.origins[o.URL] = o.State
				if known {
					m.printf("origin %s (pool %s) is %s (as %s sees it)", o.URL, p.Name, o.State, observer.Name)
				}
			}
		}
	}
}

// ranBundle returns the nodes that ever ran serial, and when each started.
func (w *watcher) ranBundle(serial uint64) map[string]time.Time { return w.copyOf(w.ran, serial) }

// leftBundle returns the nodes that went back from serial to an older bundle, and when.
func (w *watcher) leftBundle(serial uint64) map[string]time.Time { return w.copyOf(w.back, serial) }

func (w *watcher) copyOf(m map[uint64]map[string]time.Time, serial uint64) map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(m[serial])
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
