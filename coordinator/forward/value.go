package forward

import (
	"encoding/json"

	"github.com/deployme/deployme/coordinator/state"
)

// encodeValue names and encodes an object the state machine returned, for the trip back to
// the replica that forwarded the write. Stored objects are plain structs that the snapshot
// already encodes as JSON.
func encodeValue(v any) (string, []byte) {
	kind, _ := state.Describe(v)
	if kind == "" {
		return "", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", nil
	}
	return kind, b
}

// decodeValue is the inverse of encodeValue; nil when there is nothing usable.
func decodeValue(kind string, b []byte) any {
	v := state.NewObject(kind)
	if v == nil || json.Unmarshal(b, v) != nil {
		return nil
	}
	return v
}
