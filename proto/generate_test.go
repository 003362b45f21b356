// Package proto_test checks that the committed generated code is what the .proto files
// generate today, so a .proto edit without `make generate` fails the build.
package proto_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestGeneratedCodeIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: builds protoc-gen-go")
	}
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Skip("protoc is not installed (Debian: apt-get install protobuf-compiler; .ci/run installs it): cannot check generated code drift")
	}
	tmp := t.TempDir()
	// protoc-gen-go comes from the protobuf module pinned in go.mod, so the generator is the
	// same version as the runtime the code is compiled against.
	plugin := filepath.Join(tmp, "protoc-gen-go")
	if runtime.GOOS == "windows" {
		plugin += ".exe"
	}
	if out, err := exec.Command("go", "build", "-o", plugin, "google.golang.org/protobuf/cmd/protoc-gen-go").CombinedOutput(); err != nil {
		t.Fatalf("build protoc-gen-go: %v\n%s", err, out)
	}
	var protos []string
	err = filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".proto") {
			protos = append(protos, path)
		}
		return err
	})
	if err != nil || len(protos) == 0 {
		t.Fatalf("no .proto files found: %v", err)
	}
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-I", ".", "--plugin=protoc-gen-go=" + plugin, "--go_out=" + out, "--go_opt=paths=source_relative"}, protos...)
	if b, err := exec.Command(protoc, args...).CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	for _, p := range protos {
		gen := strings.TrimSuffix(p, ".proto") + ".pb.go"
		want, err := os.ReadFile(filepath.Join(out, gen))
		if err != nil {
			t.Fatalf("protoc wrote no %s: %v", gen, err)
		}
		got, err := os.ReadFile(gen)
		if err != nil {
			t.Fatalf("%s is not committed: run make generate", gen)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run make generate and commit the result", gen)
		}
	}
}
