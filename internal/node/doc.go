// Package node runs a mesh node: it reads the node's bootstrap file, serves the last
// known-good bundle from its data dir (or nothing, until a first bundle arrives), and
// activates signed bundles pushed to it only after they pass every check: signatures of
// trusted operator keys (M of N), a serial above the active one, strict validation, and a
// self-test of the compiled snapshot. A bundle that fails any step is refused with its
// reason (logged, kept in the status), and the node keeps serving what it had.
//
// Dissemination by gossip, staged waves and automatic rollback build on this package in the
// mesh issue; today bundles reach a node through its admin API (`rhizome push`).
package node
