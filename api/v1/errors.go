package v1

import (
	"fmt"
	"net/http"
)

// Error codes of the error body. The set is closed: clients switch on them.
const (
	CodeUnauthorized         = "unauthorized"
	CodeForbidden            = "forbidden"
	CodeNotFound             = "not_found"
	CodeInvalidRequest       = "invalid_request"
	CodeConflict             = "conflict"
	CodeInsufficientCapacity = "insufficient_capacity"
	CodeRateLimited          = "rate_limited"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodePayloadTooLarge      = "payload_too_large"
	CodeInternal             = "internal"
	CodeUnavailable          = "unavailable"
)

var codeStatus = map[string]int{
	CodeUnauthorized:         http.StatusUnauthorized,
	CodeForbidden:            http.StatusForbidden,
	CodeNotFound:             http.StatusNotFound,
	CodeInvalidRequest:       http.StatusBadRequest,
	CodeConflict:             http.StatusConflict,
	CodeInsufficientCapacity: http.StatusConflict,
	CodeRateLimited:          http.StatusTooManyRequests,
	CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	CodePayloadTooLarge:      http.StatusRequestEntityTooLarge,
	CodeInternal:             http.StatusInternalServerError,
	CodeUnavailable:          http.StatusServiceUnavailable,
}

// StatusOf returns the HTTP status that goes with an error code (500 for an unknown code).
func StatusOf(code string) int {
	if s, ok := codeStatus[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is the body of every non-2xx response, and the error type the application layer
// returns so that each transport maps it in one place.
type Error struct {
	Code    string         `json:"error"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Status is the HTTP status of the error.
func (e *Error) Status() int { return StatusOf(e.Code) }

// Errorf builds an error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// InvalidField is a 400 naming the offending field in details.field.
func InvalidField(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf(format, args...), Details: map[string]any{"field": field}}
}

// With returns a copy of e with one more detail.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Details = make(map[string]any, len(e.Details)+1)
	for k, v := range e.Details {
		c.Details[k] = v
	}
	c.Details[key] = value
	return &c
}
