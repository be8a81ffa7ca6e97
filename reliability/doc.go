// Package reliability is the suite that runs the real reconcile binary, built
// once per test run, against what a node image meets outside of unit tests:
// SIGKILL at every action and at random moments of bake and boot, concurrent
// runs on one root, a full disk, and hostile manifests.
//
// It holds no code of its own; the tests are in package reliability_test and
// print their counts (go test -v shows them per test, and a summary is
// always printed at the end) in a form the README quotes.
package reliability
