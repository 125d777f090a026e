package membership

import "errors"

// Sentinel errors. Functions wrap them with %w and add detail; test with
// errors.Is. An FSM Apply that rejects a command returns one of these (wrapped)
// as its result value, and the whole command is then without effect.
var (
	// ErrInvalidCommand: malformed bytes, a missing op, or a field outside its
	// limits (ids, weights, labels, batch size, duplicates within a batch).
	ErrInvalidCommand = errors.New("membership: invalid command")
	// ErrCommandTooLarge: an encoded command is over MaxCommandBytes.
	// EncodeCommand refuses it, so it never reaches the raft log (the API
	// answers ResourceExhausted).
	ErrCommandTooLarge = errors.New("membership: command too large")
	// ErrUnsupportedVersion: the command was encoded by a newer (or unknown)
	// version of the command format.
	ErrUnsupportedVersion = errors.New("membership: unsupported command version")
	// ErrUnknownMember: the command names a member id the state does not hold.
	ErrUnknownMember = errors.New("membership: unknown member")

	// ErrUnknownResource: a delete named a resource that is not registered
	// when the command is applied; nothing was deleted.
	ErrUnknownResource = errors.New("membership: resource not registered")
	// ErrInvalidTransition: the member's current state does not allow the
	// change (for example marking a member that has left as dead).
	ErrInvalidTransition = errors.New("membership: invalid state transition")
	// ErrAddressInUse: another member that has not left already uses the
	// peer address.
	ErrAddressInUse = errors.New("membership: peer address in use by another member")
	// ErrMemberBusy: a member cannot be removed while it owns resources or is
	// not dead or left.
	ErrMemberBusy = errors.New("membership: member still active or owns resources")
	// ErrCompacted: the change feed no longer holds the changes after the
	// requested revision; the reader must list the state again and resume from
	// the listing's revision.
	ErrCompacted = errors.New("membership: revision compacted from the change feed")
	// ErrInvalidSnapshot: a snapshot stream is truncated, out of order or
	// inconsistent; Restore leaves the current state untouched.
	ErrInvalidSnapshot = errors.New("membership: invalid snapshot")
	// ErrInvalidConfig: a Config failed Validate.
	ErrInvalidConfig = errors.New("membership: invalid config")
	// ErrClosed: the subscription was closed.
	ErrClosed = errors.New("membership: closed")
)
