// Package control holds the signed records that steer a running mesh without a new bundle:
// an operator's halt, resume and rollback of a bundle's rollout, kill switches for the
// security stages, and the health reports nodes make about a bundle they run.
//
// Records are small, signed and self-contained, so that they can travel in one gossip packet
// and be checked by any node on its own. Operator records are signed with an operator key
// the node trusts (one signature is enough: each of them moves the network towards less
// change — stop, go back, switch off — except resume, which only undoes an operator's or a
// node's stop). Node reports are signed with the node's own key, which the node publishes in
// its mesh metadata; the gossip key keeps strangers out of the mesh, and the signature makes
// each report attributable to one node and unforgeable by the others.
//
// A Set is a node's collection of records. It merges records from any source (gossip,
// catch-up from a peer, the admin API, the data dir) idempotently, so every node that has
// seen the same records derives the same state: which bundles are halted or rolled back and
// which kill switches are on. This package does no I/O.
package control
