package bwe

import "errors"

// What Feedback says about the parts of a feedback it could not use; its error wraps one or
// more of these (errors.Is works through errors.Join).
var (
	// ErrMalformed: the feedback contradicts itself (chunks that do not cover the reported
	// packets, missing or out-of-range receive deltas, unknown chunk or symbol types). When
	// the reported packets cannot be read, none of the feedback is used.
	ErrMalformed = errors.New("malformed transport-wide feedback")
	// ErrUnknownPacket: sequence numbers never sent on this connection, or sent so long ago
	// that the history no longer holds them.
	ErrUnknownPacket = errors.New("feedback on packets not in the send history")
	// ErrDuplicate: packets already reported by an earlier feedback. Receivers resend
	// reports after reordering, so a few of these are normal.
	ErrDuplicate = errors.New("feedback on packets already reported")
	// ErrAbsurdDelta: arrival times so far apart that no queue explains them; none of the
	// feedback is used.
	ErrAbsurdDelta = errors.New("feedback with implausible arrival times")
)
