// Package images builds the netboot image (DESIGN.md section 9): Debian's kernel, an initrd
// holding our /init (images/init) and the agent (cmd/agent) with the NIC drivers the kernel
// needs, and the iPXE binaries the PXE server hands out. What is in it and why: README.md.
//
// The build is reproducible: the same sources, Go toolchain, kernel, iPXE package and CA
// bundle give the same bytes, so SHA256SUMS identifies an image.
package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/deployme/deployme/images/initramfs"
	"github.com/deployme/deployme/internal/atomicfile"
)

// Names of the artifacts in Config.OutDir.
const (
	Vmlinuz      = "vmlinuz"
	Initrd       = "initrd.img"
	Manifest     = "initrd.txt" // what the initrd holds: mode, size, sha256, path
	AgentBin     = "agent"
	InitBin      = "init"
	SumsFile     = "SHA256SUMS"
	UndionlyKPXE = "undionly.kpxe"
	IPXEEFI      = "ipxe.efi"
	SNPOnlyEFI   = "snponly.efi"
)

// ipxeFiles are copied from Debian's ipxe package: BIOS (chain-loaded by the NIC's PXE ROM
// through its UNDI driver) and UEFI (with its own drivers, or the firmware's SNP only).
var ipxeFiles = []string{UndionlyKPXE, IPXEEFI, SNPOnlyEFI}

// Config says what to build from. Tests start from DefaultConfig and change fields.
type Config struct {
	// OutDir receives the artifacts (created if missing; artifacts already there are
	// replaced).
	OutDir string
	// ModuleRoot is the repository (the Go module holding cmd/agent and images/init).
	ModuleRoot string
	// Go is the go command that builds the binaries.
	Go string
	// Version is stamped into the agent (internal/buildinfo.Version); empty leaves the
	// agent to report "dev".
	Version string
	// KernelVersion picks an installed kernel; empty means the newest one (FindKernel).
	KernelVersion string
	// BootDir and ModulesDir are where Debian installs kernels and their modules.
	BootDir, ModulesDir string
	// Modules go into the initrd with their dependencies (DefaultModules).
	Modules []string
	// IPXEDir holds Debian's iPXE binaries (package ipxe).
	IPXEDir string
	// CACerts is copied to /etc/ssl/certs/ca-certificates.crt when the file exists.
	CACerts string
	// Logger reports progress; nil discards.
	Logger *slog.Logger
}

// DefaultConfig builds into images/out of the module in the working directory.
func DefaultConfig() Config {
	return Config{
		OutDir:     "images/out",
		Go:         "go",
		BootDir:    "/boot",
		ModulesDir: "/lib/modules",
		Modules:    append([]string(nil), DefaultModules...),
		IPXEDir:    "/usr/lib/ipxe",
		CACerts:    "/etc/ssl/certs/ca-certificates.crt",
	}
}

// Validate checks the fields that have no usable zero value.
func (c Config) Validate() error {
	switch {
	case c.OutDir == "":
		return errors.New("images: OutDir is empty")
	case c.Go == "":
		return errors.New("images: Go is empty")
	case c.BootDir == "" || c.ModulesDir == "":
		return errors.New("images: BootDir and ModulesDir are needed")
	case len(c.Modules) == 0:
		return errors.New("images: no modules: the image could not reach the network")
	case c.IPXEDir == "":
		return errors.New("images: IPXEDir is empty")
	}
	return nil
}

// MissingError is a build input this machine does not have; Install names the Debian
// package that provides it.
type MissingError struct {
	What    string
	Install string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("images: missing %s (apt-get install %s)", e.What, e.Install)
}

// Artifact is one file of the build.
type Artifact struct {
	Name   string
	Size   int64
	SHA256 string
}

// Result is what Build wrote.
type Result struct {
	Kernel    Kernel
	Modules   []string // file names in the initrd, in load order
	Artifacts []Artifact
}

// Build builds the image into cfg.OutDir.
func Build(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ModuleRoot == "" {
		root, err := moduleRoot(ctx, cfg.Go)
		if err != nil {
			return nil, err
		}
		cfg.ModuleRoot = root
	}
	k, err := cfg.CheckInputs()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	res := &Result{Kernel: k}
	binaries := map[string][]byte{}
	for _, bin := range []struct{ name, pkg string }{{AgentBin, "./cmd/agent"}, {InitBin, "./images/init"}} {
		log.Info("go build", "package", bin.pkg)
		b, err := goBuild(ctx, cfg, bin.pkg, filepath.Join(cfg.OutDir, bin.name))
		if err != nil {
			return nil, err
		}
		binaries[bin.name] = b
	}
	log.Info("initrd", "kernel", k.Version)
	initrd, manifest, modules, err := buildInitrd(cfg, k, binaries)
	if err != nil {
		return nil, err
	}
	res.Modules = modules
	if err := atomicfile.Write(filepath.Join(cfg.OutDir, Initrd), initrd, 0o644); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(cfg.OutDir, Manifest), manifest, 0o644); err != nil {
		return nil, err
	}
	copies := map[string]string{Vmlinuz: k.Image}
	for _, f := range ipxeFiles {
		copies[f] = filepath.Join(cfg.IPXEDir, f)
	}
	for dst, src := range copies {
		b, err := os.ReadFile(src) // follows Debian's symlinks (ipxe.efi -> /boot/ipxe.efi)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Write(filepath.Join(cfg.OutDir, dst), b, 0o644); err != nil {
			return nil, err
		}
	}
	names := []string{AgentBin, InitBin, Initrd, Manifest, Vmlinuz}
	names = append(names, ipxeFiles...)
	sort.Strings(names)
	var sums bytes.Buffer
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(cfg.OutDir, n))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		a := Artifact{Name: n, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
		res.Artifacts = append(res.Artifacts, a)
		fmt.Fprintf(&sums, "%s  %s\n", a.SHA256, a.Name) // sha256sum -c reads this
	}
	if err := atomicfile.Write(filepath.Join(cfg.OutDir, SumsFile), sums.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

// CheckInputs finds the kernel to use and checks that the iPXE binaries are there; an
// input that is not is a *MissingError.
func (c Config) CheckInputs() (Kernel, error) {
	k, err := FindKernel(c.BootDir, c.ModulesDir, c.KernelVersion)
	if err != nil {
		return Kernel{}, err
	}
	for _, f := range ipxeFiles {
		if _, err := os.Stat(filepath.Join(c.IPXEDir, f)); err != nil {
			return Kernel{}, &MissingError{What: filepath.Join(c.IPXEDir, f), Install: "ipxe"}
		}
	}
	return k, nil
}

// moduleRoot is the directory of the go.mod governing the working directory.
func moduleRoot(ctx context.Context, goCmd string) (string, error) {
	out, err := exec.CommandContext(ctx, goCmd, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("images: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("images: not inside the deployme module; run from the repository")
	}
	return filepath.Dir(gomod), nil
}

// goBuild builds pkg as a static linux/amd64 binary at out and returns its bytes. Every
// setting that changes the output is pinned here rather than taken from the environment.
func goBuild(ctx context.Context, cfg Config, pkg, out string) ([]byte, error) {
	ldflags := "-s -w -buildid="
	if cfg.Version != "" {
		ldflags += " -X github.com/deployme/deployme/internal/buildinfo.Version=" + cfg.Version
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(filepath.Dir(abs), "."+filepath.Base(abs)+".tmp")
	defer os.Remove(tmp)
	cmd := exec.CommandContext(ctx, cfg.Go, "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", tmp, pkg)
	cmd.Dir = cfg.ModuleRoot
	var env []string
	for _, e := range os.Environ() {
		switch k, _, _ := strings.Cut(e, "="); k {
		case "CGO_ENABLED", "GOOS", "GOARCH", "GOAMD64", "GOFLAGS", "GOEXPERIMENT":
		default:
			env = append(env, e)
		}
	}
	// GOAMD64=v1: the image boots on any x86-64 server, however old.
	cmd.Env = append(env, "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("images: go build %s: %w\n%s", pkg, err, b)
	}
	b, err := os.ReadFile(tmp)
	if err != nil {
		return nil, err
	}
	return b, os.Rename(tmp, abs)
}

// osRelease names the image for the agent's inventory (PRETTY_NAME).
const osRelease = `PRETTY_NAME="deployme netboot image"
NAME="deployme netboot"
ID=deployme-netboot
`

// hosts lets localhost resolve without DNS.
const hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

// buildInitrd assembles the initrd, its manifest and the module load order.
func buildInitrd(cfg Config, k Kernel, binaries map[string][]byte) (initrd, manifest []byte, order []string, err error) {
	a := initramfs.New()
	var addErr error // the first error of the adds below
	add := func(err error) {
		if err != nil && addErr == nil {
			addErr = err
		}
	}
	add(a.File("/init", 0o755, binaries[InitBin]))
	add(a.File("/bin/agent", 0o755, binaries[AgentBin]))
	// Mount points and the agent's home exist before init runs; /dev/console lets the
	// kernel give init its console even before devtmpfs is mounted.
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/var/lib"} {
		add(a.Dir(d, 0o755))
	}
	add(a.CharDevice("/dev/console", 0o600, 5, 1))
	// A placeholder: init writes the host name it chose (kernel command line, DHCP, or
	// made from the MAC address) over it.
	add(a.File("/etc/hostname", 0o644, []byte("localhost\n")))
	add(a.File("/etc/os-release", 0o644, []byte(osRelease)))
	add(a.File("/etc/hosts", 0o644, []byte(hosts)))
	if b, err := os.ReadFile(cfg.CACerts); err == nil {
		add(a.File("/etc/ssl/certs/ca-certificates.crt", 0o644, b))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil, err
	}
	files, err := ResolveModules(k.Modules, cfg.Modules)
	if err != nil {
		return nil, nil, nil, err
	}
	seen := map[string]string{}
	for _, f := range files {
		base := filepath.Base(f)
		if prev, dup := seen[base]; dup {
			return nil, nil, nil, fmt.Errorf("images: modules %s and %s share a file name", prev, f)
		}
		seen[base] = f
		b, err := os.ReadFile(filepath.Join(k.Modules, f))
		if err != nil {
			return nil, nil, nil, err
		}
		add(a.File("/lib/modules/"+base, 0o644, b))
		order = append(order, base)
	}
	orderFile := fmt.Sprintf("# kernel %s: load order, dependencies first (images/build)\n%s\n", k.Version, strings.Join(order, "\n"))
	add(a.File("/lib/modules/order", 0o644, []byte(orderFile)))
	if addErr != nil {
		return nil, nil, nil, addErr
	}
	var gz, m bytes.Buffer
	if err := a.WriteGzip(&gz); err != nil {
		return nil, nil, nil, err
	}
	if err := a.WriteManifest(&m); err != nil {
		return nil, nil, nil, err
	}
	return gz.Bytes(), m.Bytes(), order, nil
}
