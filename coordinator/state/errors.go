package state

import "fmt"

// Kind classifies a refused write, so each transport maps it without reading messages.
type Kind int

const (
	KindInvalid Kind = iota + 1
	KindNotFound
	KindConflict
	KindCapacity
)

// Error is why a command was refused. The FSM returns it as the command's result, so it is
// produced identically on every replica.
type Error struct {
	Kind    Kind   `json:"kind"`
	Message string `json:"message"`
	// Field names the offending request field (KindInvalid).
	Field string `json:"field,omitempty"`
	// Details carries machine-readable context (counts for KindCapacity, the running
	// operation for KindConflict).
	Details map[string]any `json:"details,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// NotFound is a refused write on a missing object.
func NotFound(format string, args ...any) *Error {
	return &Error{Kind: KindNotFound, Message: fmt.Sprintf(format, args...)}
}

// Conflict is a refused write on an object in the wrong state.
func Conflict(format string, args ...any) *Error {
	return &Error{Kind: KindConflict, Message: fmt.Sprintf(format, args...)}
}

// Invalid is a refused write whose field is wrong given the state (e.g. an unknown infra).
func Invalid(field, format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}
