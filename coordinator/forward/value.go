package forward

import (
	"encoding/json"

	"github.com/deployme/deployme/coordinator/state"
)

// encodeValue names and encodes an object the state machine returned, for the trip back to
// the replica that forwarded the write. Stored objects are plain structs that the snapshot
// already encodes as JSON.
func encodeValue(v any) (string, []byte) {
	var typ string
	switch v.(type) {
	case *state.Cluster:
		typ = "cluster"
	case *state.Token:
		typ = "token"
	case *state.Infra:
		typ = "infra"
	case *state.JoinToken:
		typ = "join_token"
	case *state.Host:
		typ = "host"
	case *state.Node:
		typ = "node"
	case *state.Member:
		typ = "member"
	default:
		return "", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", nil
	}
	return typ, b
}

// decodeValue is the inverse of encodeValue; nil when there is nothing usable.
func decodeValue(typ string, b []byte) any {
	var v any
	switch typ {
	case "cluster":
		v = &state.Cluster{}
	case "token":
		v = &state.Token{}
	case "infra":
		v = &state.Infra{}
	case "join_token":
		v = &state.JoinToken{}
	case "host":
		v = &state.Host{}
	case "node":
		v = &state.Node{}
	case "member":
		v = &state.Member{}
	default:
		return nil
	}
	if json.Unmarshal(b, v) != nil {
		return nil
	}
	return v
}
