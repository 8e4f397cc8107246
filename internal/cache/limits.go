package cache

// MaxObjectBytes returns the largest body the store accepts, after defaults. The proxy asks
// it up front so that a response whose Content-Length is over the limit streams straight to
// the client instead of through a fill that would be thrown away.
func (s *Store) MaxObjectBytes() int64 { return s.cfg.MaxObjectBytes }
