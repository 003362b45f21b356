package agentsvc

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/deployme/deployme/api/v1"
)

// grpcError is the one place an application error becomes a gRPC status.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	var e *v1.Error
	if !errors.As(err, &e) {
		return status.Error(codes.Internal, err.Error())
	}
	return status.Error(codeOf(e.Code), e.Message)
}

func codeOf(code string) codes.Code {
	switch code {
	case v1.CodeUnauthorized:
		return codes.Unauthenticated
	case v1.CodeForbidden:
		return codes.PermissionDenied
	case v1.CodeInvalidRequest:
		return codes.InvalidArgument
	case v1.CodeNotFound:
		return codes.NotFound
	case v1.CodeConflict, v1.CodeInsufficientCapacity:
		return codes.FailedPrecondition
	case v1.CodeUnavailable:
		return codes.Unavailable
	case v1.CodeRateLimited:
		return codes.ResourceExhausted
	default:
		return codes.Internal
	}
}
