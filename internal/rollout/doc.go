// Package rollout is the pure logic of staged bundle rollouts on a mesh with no coordinator.
//
// A signed bundle carries a Plan: cumulative waves (1 node, 10%, 50%, 100%), each with a bake
// time. Every node ranks the members it sees by a hash of the bundle id and their names
// (Rank), so nodes that see the same members agree on who is in which wave without talking
// to each other, and a new bundle picks a new canary. A node in wave k activates the bundle
// only when every member of every earlier wave runs it, reports healthy and has baked for
// its wave's bake time (Check). After activation a node judges its own health from counters
// (Judge) and reports it in its signed status.
//
// The package must stay a leaf: it imports nothing of rhizome, does no I/O, starts no
// goroutines and reads no clock. Time is passed in, so bake times test without sleeps and
// clocks of other machines never matter (Peer.Since is this node's own observation).
package rollout
