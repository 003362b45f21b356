// Command build builds the netboot image (package images) into -out:
//
//	go run ./images/build -out images/out
//
// It is what `make images` runs. Flags map to images.Config; see images/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/deployme/deployme/images"
)

func main() {
	cfg := images.DefaultConfig()
	flag.StringVar(&cfg.OutDir, "out", cfg.OutDir, "directory for the artifacts")
	flag.StringVar(&cfg.Go, "go", cfg.Go, "go command that builds the binaries")
	flag.StringVar(&cfg.Version, "version", "", "version stamped into the agent (default: none, the agent reports dev)")
	flag.StringVar(&cfg.KernelVersion, "kernel", "", "installed kernel version to use (default: the newest in /boot)")
	flag.StringVar(&cfg.IPXEDir, "ipxe-dir", cfg.IPXEDir, "directory of Debian's iPXE binaries")
	modules := flag.String("modules", strings.Join(cfg.Modules, ","), "kernel modules to include, with their dependencies")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "build: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	cfg.Modules = nil
	for _, m := range strings.Split(*modules, ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Modules = append(cfg.Modules, m)
		}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := images.Build(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("kernel %s, %d modules\n", res.Kernel.Version, len(res.Modules))
	for _, a := range res.Artifacts {
		fmt.Printf("%10d  %s  %s\n", a.Size, a.SHA256[:16], a.Name)
	}
}
