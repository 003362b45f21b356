package inventory

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// addFile adds a golden host file to a fuzz corpus, so the fuzzer starts from real content.
func addFile(f *testing.F, path string) {
	f.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
}

func FuzzParseLabels(f *testing.F) {
	for _, s := range []string{
		"", " ", "rack=r12,zone=a", " rack=r12 , zone=a ", "gpu=", "topology.kubernetes.io/zone=eu-west-1a",
		"rack=r1,rack=r2", "=a", "rack", "rack=r1,", "a.com/b/c=r1", "k=a=b", "Example.com/rack=r1",
		strings.Repeat("k", 64) + "=v", strings.Repeat("a.", 130) + "b/k=v", "r\xffk=v", ",,,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseLabels(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidLabel) || got != nil {
				t.Fatalf("ParseLabels(%q) = %v, %v; want nil and an error wrapping ErrInvalidLabel", s, got, err)
			}
			return
		}
		if got == nil {
			t.Fatalf("ParseLabels(%q) = nil, nil; want a map", s)
		}
		pairs := make([]string, 0, len(got))
		for _, k := range slices.Sorted(maps.Keys(got)) {
			v := got[k]
			if validateLabelKey(k) != nil || (v != "" && validateLabelName(v) != nil) {
				t.Fatalf("ParseLabels(%q) accepted the invalid label %q=%q", s, k, v)
			}
			pairs = append(pairs, k+"="+v)
		}
		// What was accepted prints back to a value that parses the same.
		again, err := ParseLabels(strings.Join(pairs, ","))
		if err != nil || !maps.Equal(got, again) {
			t.Fatalf("ParseLabels(%q) = %v, but its re-encoding parses as %v, %v", s, got, again, err)
		}
	})
}

func FuzzParseCPUInfo(f *testing.F) {
	addFile(f, "testdata/host/proc/cpuinfo")
	f.Add([]byte(""))
	f.Add([]byte("processor : 0\nmodel name : X\nprocessor : 1\n"))
	f.Add([]byte("model name\t: only a model\n"))
	f.Add([]byte("processor:" + strings.Repeat("x", 70<<10) + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, model, err := parseCPUInfo("cpuinfo", data)
		if err != nil {
			if n != 0 || model != "" {
				t.Fatalf("parseCPUInfo = %d, %q with error %v; want zero values", n, model, err)
			}
			return
		}
		if n <= 0 {
			t.Fatalf("parseCPUInfo(%q) = %d processors and no error", data, n)
		}
	})
}

func FuzzParseMemTotal(f *testing.F) {
	addFile(f, "testdata/host/proc/meminfo")
	f.Add([]byte(""))
	f.Add([]byte("MemTotal:\n"))
	f.Add([]byte("MemTotal: x kB\n"))
	f.Add([]byte("MemTotal: -1 kB\n"))
	f.Add([]byte("MemTotal: 9223372036854775807 kB\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := parseMemTotal("meminfo", data)
		if err == nil && n < 0 {
			// The coordinator refuses a negative memory size: the agent could never register.
			t.Fatalf("parseMemTotal(%q) = %d and no error", data, n)
		}
	})
}

func FuzzParsePrettyName(f *testing.F) {
	addFile(f, "testdata/host/etc/os-release")
	for _, s := range []string{
		"", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n", "PRETTY_NAME='Fedora Linux 40'\n", "PRETTY_NAME=Alpine\n",
		`PRETTY_NAME="My \"special\" OS"` + "\n", `PRETTY_NAME="\"`, "PRETTY_NAME='\n", "PRETTY_NAME=\"\\xff\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := parsePrettyName(data)
		// The value is cut from the file as is; only a double-quoted one is unescaped (and
		// then invalid UTF-8 becomes U+FFFD).
		if !bytes.ContainsRune(data, '"') && !bytes.Contains(data, []byte(got)) {
			t.Fatalf("parsePrettyName(%q) = %q, which is not in the file", data, got)
		}
	})
}

func FuzzParseVPD80(f *testing.F) {
	addFile(f, "testdata/host/sys/block/sda/device/vpd_pg80")
	f.Add([]byte{})
	f.Add([]byte{0, 0x80, 0xff, 0xff, 'a'})
	f.Add([]byte{0, 0x80, 0, 2, ' ', 'a', 'b'})
	f.Fuzz(func(t *testing.T, page []byte) {
		if got := parseVPD80(page); len(got) > max(len(page)-4, 0) {
			t.Fatalf("parseVPD80(%x) = %q, longer than the page body", page, got)
		}
	})
}
