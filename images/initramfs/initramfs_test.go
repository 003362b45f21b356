package initramfs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parsed is one newc entry as read back.
type parsed struct {
	Name         string
	Ino, Mode    uint32
	UID, GID     uint32
	Nlink, Mtime uint32
	Major, Minor uint32
	Data         string
}

// readNewc parses a newc archive up to its trailer: an independent reading of cpio(5),
// so that a writer bug is not mirrored by the reader.
func readNewc(t *testing.T, b []byte) []parsed {
	t.Helper()
	var out []parsed
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		if off+110 > len(b) {
			t.Fatalf("truncated header at %d", off)
		}
		h := string(b[off : off+110])
		if h[:6] != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			return uint32(v)
		}
		namesize, filesize := int(field(11)), int(field(6))
		off += 110
		name := string(b[off : off+namesize-1])
		if b[off+namesize-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		off += namesize
		align()
		if name == "TRAILER!!!" {
			if rest := bytes.TrimRight(b[off:], "\x00"); len(rest) != 0 {
				t.Fatalf("%d bytes after the trailer", len(rest))
			}
			return out
		}
		data := string(b[off : off+filesize])
		off += filesize
		align()
		out = append(out, parsed{Name: name, Ino: field(0), Mode: field(1), UID: field(2), GID: field(3),
			Nlink: field(4), Mtime: field(5), Major: field(9), Minor: field(10), Data: data})
	}
}

func sample(t *testing.T) *Archive {
	t.Helper()
	a := New()
	for _, err := range []error{
		a.File("/bin/agent", 0o755, []byte("agent")),
		a.File("/init", 0o755, []byte("init!")),
		a.File("/lib/modules/order", 0o644, []byte("e1000.ko\n")),
		a.CharDevice("/dev/console", 0o600, 5, 1),
		a.Dir("/tmp", fs.ModeSticky|0o777),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func TestWriteCPIO(t *testing.T) {
	var buf bytes.Buffer
	if err := sample(t).WriteCPIO(&buf); err != nil {
		t.Fatal(err)
	}
	want := []parsed{
		{Name: "bin", Ino: 1, Mode: 0o40755, Nlink: 2},
		{Name: "bin/agent", Ino: 2, Mode: 0o100755, Nlink: 1, Data: "agent"},
		{Name: "dev", Ino: 3, Mode: 0o40755, Nlink: 2},
		{Name: "dev/console", Ino: 4, Mode: 0o20600, Nlink: 1, Major: 5, Minor: 1},
		{Name: "init", Ino: 5, Mode: 0o100755, Nlink: 1, Data: "init!"},
		{Name: "lib", Ino: 6, Mode: 0o40755, Nlink: 2},
		{Name: "lib/modules", Ino: 7, Mode: 0o40755, Nlink: 2},
		{Name: "lib/modules/order", Ino: 8, Mode: 0o100644, Nlink: 1, Data: "e1000.ko\n"},
		{Name: "tmp", Ino: 9, Mode: 0o41777, Nlink: 2},
	}
	if diff := cmp.Diff(want, readNewc(t, buf.Bytes())); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", buf.Len())
	}
}

func TestAddErrors(t *testing.T) {
	for _, name := range []string{"", "/", "init", "/a/../b", "/a/", "//a"} {
		if err := New().File(name, 0o644, nil); !errors.Is(err, ErrBadPath) {
			t.Errorf("File(%q) = %v, want ErrBadPath", name, err)
		}
	}
	a := New()
	if err := a.File("/x", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.File("/x", 0o644, nil); err == nil {
		t.Error("adding /x twice succeeded")
	}
	if err := a.File("/x/y", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteCPIO(io.Discard); err == nil || !strings.Contains(fmt.Sprint(err), "not a directory") {
		t.Errorf("file used as a directory: %v", err)
	}
}

// TestGzipReproducible: two archives with the same content, added in different orders,
// compress to the same bytes, with no name and no time in the gzip header.
func TestGzipReproducible(t *testing.T) {
	var one, two bytes.Buffer
	if err := sample(t).WriteGzip(&one); err != nil {
		t.Fatal(err)
	}
	b := New()
	for _, err := range []error{
		b.Dir("/tmp", fs.ModeSticky|0o777),
		b.CharDevice("/dev/console", 0o600, 5, 1),
		b.File("/lib/modules/order", 0o644, []byte("e1000.ko\n")),
		b.File("/init", 0o755, []byte("init!")),
		b.File("/bin/agent", 0o755, []byte("agent")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := b.WriteGzip(&two); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Fatal("same content, different bytes")
	}
	zr, err := gzip.NewReader(bytes.NewReader(one.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() || zr.Comment != "" {
		t.Errorf("gzip header name=%q mtime=%v comment=%q, want all empty", zr.Name, zr.ModTime, zr.Comment)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(readNewc(t, raw)); got != 9 {
		t.Errorf("%d entries after gunzip, want 9", got)
	}
}

func TestWriteManifest(t *testing.T) {
	var buf bytes.Buffer
	if err := sample(t).WriteManifest(&buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := map[int]string{
		0: "040755         0 - /bin",
		1: "100755         5 " + sha("agent") + " /bin/agent",
		3: "020600         0 - /dev/console",
	}
	if len(lines) != 9 {
		t.Fatalf("%d lines, want 9:\n%s", len(lines), buf.String())
	}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("line %d = %q, want %q", i, lines[i], w)
		}
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestGNUCpioReads cross-checks the format with GNU cpio when it is installed.
func TestGNUCpioReads(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("GNU cpio not installed (apt-get install cpio); the format is checked by TestWriteCPIO")
	}
	var buf bytes.Buffer
	if err := sample(t).WriteCPIO(&buf); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-i", "-t", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v: %s", err, out)
	}
	want := "bin\nbin/agent\ndev\ndev/console\ninit\nlib\nlib/modules\nlib/modules/order\ntmp\n"
	if diff := cmp.Diff(want, string(out)); diff != "" {
		t.Errorf("cpio -t (-want +got):\n%s", diff)
	}
}
