package command_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/deployme/deployme/coordinator/command"
)

// FuzzDecode feeds arbitrary log entries to Decode: it must never panic, must refuse what
// it cannot read, and whatever it accepts must survive an Encode/Decode round trip.
func FuzzDecode(f *testing.F) {
	for typ, msg := range samples {
		entry, err := command.Encode(typ, msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(entry)
	}
	f.Add([]byte{})
	f.Add([]byte{byte(command.TypeCreateToken)})
	f.Add([]byte{byte(command.TypeCreateToken), 0})
	f.Add([]byte{byte(command.TypeCreateToken), command.Version + 1})
	f.Add([]byte{0, command.Version})
	f.Add([]byte{byte(command.IgnoreIfUnknown | 0x7f), command.Version, 0xff})
	f.Add([]byte{byte(command.TypeRegisterHost), command.Version, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{byte(command.TypeIdempotent), command.Version, 0x22, 0x02, byte(command.TypeIdempotent), command.Version})
	f.Fuzz(func(t *testing.T, entry []byte) {
		typ, msg, err := command.Decode(entry)
		if err != nil {
			if msg != nil {
				t.Fatalf("Decode(%x) = %v with error %v; want no message with an error", entry, msg, err)
			}
			if _, nerr := command.New(typ); len(entry) >= 2 && nerr != nil && !errors.Is(err, command.ErrUnknownType) {
				t.Fatalf("Decode(%x) of unknown type %s: %v; want ErrUnknownType", entry, typ, err)
			}
			return
		}
		if len(entry) < 2 || msg == nil || typ != command.Type(entry[0]) || entry[1] == 0 || entry[1] > command.Version {
			t.Fatalf("Decode(%x) = %s, %v, nil; accepted a malformed entry", entry, typ, msg)
		}
		again, err := command.Encode(typ, msg)
		if err != nil {
			t.Fatalf("Encode of a decoded %s: %v", typ, err)
		}
		typ2, msg2, err := command.Decode(again)
		if err != nil || typ2 != typ || !proto.Equal(msg, msg2) {
			t.Fatalf("round trip of %s: %s, %v, %v; want %v", typ, typ2, msg2, err, msg)
		}
	})
}
