package tftp

import (
	"errors"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

var pathCases = []struct {
	in, want string // want "" means refused
}{
	{"undionly.kpxe", "undionly.kpxe"},
	{"/undionly.kpxe", "undionly.kpxe"},
	{"efi/ipxe.efi", "efi/ipxe.efi"},
	{"/efi/ipxe.efi", "efi/ipxe.efi"},
	{"../etc/passwd", ""},
	{"/../x", ""},
	{"a/../../b", ""},
	{"a/../b", ""},
	{"//etc/passwd", ""},
	{"x\x00y", ""},
	{strings.Repeat("a", 255), strings.Repeat("a", 255)},
	{strings.Repeat("a", 256), ""},
	{`..\x`, ""},
	{`a\b`, ""},
	{"..", ""},
	{".", ""},
	{"/", ""},
	{"", ""},
	{"./x", ""},
	{"x/", ""},
	{"a//b", ""},
	{"a/./b", ""},
	{"x\ny", ""},
	{"x\x7f", ""},
	{"..foo", "..foo"}, // a name, not a parent reference
}

func TestCleanPath(t *testing.T) {
	for _, tc := range pathCases {
		got, err := cleanPath(tc.in)
		if tc.want == "" {
			if err == nil || !errors.Is(err, ErrAccessViolation) {
				t.Errorf("cleanPath(%q) = %q, %v; want ErrAccessViolation", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzCleanPath checks the invariant the server relies on: whatever cleanPath accepts is a
// local path (filepath.IsLocal, an independent implementation) that stays inside any
// directory it is joined to, and is exactly the input minus one leading slash.
func FuzzCleanPath(f *testing.F) {
	for _, tc := range pathCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, name string) {
		rel, err := cleanPath(name)
		if err != nil {
			if !errors.Is(err, ErrAccessViolation) {
				t.Fatalf("cleanPath(%q) error %v does not wrap ErrAccessViolation", name, err)
			}
			return
		}
		if !filepath.IsLocal(rel) {
			t.Fatalf("cleanPath(%q) = %q, not local", name, rel)
		}
		const base = "/srv/assets"
		if j := path.Join(base, rel); !strings.HasPrefix(j, base+"/") {
			t.Fatalf("cleanPath(%q) = %q resolves to %q, outside %s", name, rel, j, base)
		}
		if rel != strings.TrimPrefix(name, "/") || path.Clean(rel) != rel {
			t.Fatalf("cleanPath(%q) = %q, not the canonical input", name, rel)
		}
		if len(rel) > maxNameLen || strings.ContainsAny(rel, "\x00\\") {
			t.Fatalf("cleanPath(%q) = %q, has a forbidden byte or is too long", name, rel)
		}
	})
}
