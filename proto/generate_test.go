// Package proto_test checks that the committed generated code is what the .proto files
// generate today, so a .proto edit without `make generate` fails the build.
package proto_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
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
	// The plugins are tool dependencies in go.mod, so the generators are the versions pinned
	// there, matching the runtime the code is compiled against.
	bin := filepath.Join(tmp, "bin")
	if out, err := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
		"google.golang.org/protobuf/cmd/protoc-gen-go", "google.golang.org/grpc/cmd/protoc-gen-go-grpc").CombinedOutput(); err != nil {
		t.Fatalf("build protoc plugins: %v\n%s", err, out)
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
	args := append([]string{"-I", ".",
		"--plugin=protoc-gen-go=" + filepath.Join(bin, "protoc-gen-go"), "--go_out=" + out, "--go_opt=paths=source_relative",
		"--plugin=protoc-gen-go-grpc=" + filepath.Join(bin, "protoc-gen-go-grpc"), "--go-grpc_out=" + out, "--go-grpc_opt=paths=source_relative"},
		protos...)
	if b, err := exec.Command(protoc, args...).CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	var generated []string
	err = filepath.WalkDir(out, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(out, path)
			generated = append(generated, rel)
		}
		return err
	})
	if err != nil || len(generated) == 0 {
		t.Fatalf("protoc generated nothing: %v", err)
	}
	for _, gen := range generated {
		want, err := os.ReadFile(filepath.Join(out, gen))
		if err != nil {
			t.Fatal(err)
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
