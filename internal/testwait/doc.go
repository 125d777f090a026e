// Package testwait holds the one polling helper of the project's tests:
// Eventually asks a condition again and again until it holds or a deadline
// passes, and fails the test with the condition's last explanation. Tests
// wait for conditions this way, never with a bare sleep "long enough".
//
// It is a leaf package (it imports nothing of the project), so the internal
// tests of every package — election, membership, rpc/transport,
// internal/faultnet, which internal/testcluster imports and so cannot use —
// share it with internal/testcluster and the tests built on it.
package testwait
