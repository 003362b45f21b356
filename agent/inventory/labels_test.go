package inventory

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLabels(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]string
		// wantErr is a fragment the error must contain: it names the offending label.
		wantErr string
	}{
		{name: "empty", in: "", want: map[string]string{}},
		{name: "blank", in: "  ", want: map[string]string{}},
		{name: "more labels than the coordinator takes", in: strings.TrimSuffix(strings.Repeat("k=v,", 65), ","), wantErr: "at most 64"},
		{name: "key longer than the coordinator takes", in: strings.Repeat("a", 200) + ".io/" + strings.Repeat("b", 60) + "=v", wantErr: "longer than 256"},
		{name: "two", in: "rack=r12,zone=a", want: map[string]string{"rack": "r12", "zone": "a"}},
		{name: "spaces around pairs", in: " rack=r12 , zone=a ", want: map[string]string{"rack": "r12", "zone": "a"}},
		{name: "empty value", in: "gpu=", want: map[string]string{"gpu": ""}},
		{name: "prefixed key", in: "topology.kubernetes.io/zone=eu-west-1a", want: map[string]string{"topology.kubernetes.io/zone": "eu-west-1a"}},
		{name: "name charset", in: "a.b_c-D9=X_y.z-1", want: map[string]string{"a.b_c-D9": "X_y.z-1"}},
		{name: "63-character name", in: strings.Repeat("k", 63) + "=v", want: map[string]string{strings.Repeat("k", 63): "v"}},
		{name: "63-character value", in: "k=" + strings.Repeat("v", 63), want: map[string]string{"k": strings.Repeat("v", 63)}},

		{name: "duplicate key", in: "rack=r1,rack=r2", wantErr: `"rack=r2": key "rack" given twice`},
		{name: "empty key", in: "=a", wantErr: `"=a": key is empty`},
		{name: "no equals", in: "rack", wantErr: `"rack": want key=value`},
		{name: "stray comma", in: "rack=r1,", wantErr: "label 2 is empty"},
		{name: "64-character name", in: strings.Repeat("k", 64) + "=v", wantErr: "longer than 63"},
		{name: "64-character value", in: "k=" + strings.Repeat("v", 64), wantErr: "value is longer than 63"},
		{name: "name starts with dash", in: "-rack=r1", wantErr: `"-rack=r1": key must start and end`},
		{name: "value ends with dot", in: "rack=r1.", wantErr: `"rack=r1.": value must start and end`},
		{name: "bad character in value", in: "rack=r 1", wantErr: `value has ' '`},
		{name: "bad character in key", in: "ra:ck=r1", wantErr: `key has ':'`},
		{name: "uppercase prefix", in: "Example.com/rack=r1", wantErr: `prefix "Example.com"`},
		{name: "empty prefix", in: "/rack=r1", wantErr: `prefix "" is empty`},
		{name: "empty name after prefix", in: "example.com/=r1", wantErr: `name "" is empty`},
		{name: "two slashes", in: "a.com/b/c=r1", wantErr: `name "b/c"`},
		{name: "value with equals", in: "k=a=b", wantErr: `value has '='`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLabels(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseLabels(%q) = %v, want an error containing %q", tt.in, got, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidLabel) {
					t.Errorf("error %v does not wrap ErrInvalidLabel", err)
				}
				// Reading the text is fine here: the test checks what the operator sees.
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLabels(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseLabels(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}
