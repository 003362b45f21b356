package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// modulesDir holds the image's kernel modules, flat, and orderFile: their load order,
// dependencies first, as images/build resolved it from the kernel's modules.dep.
const (
	modulesDir = "/lib/modules"
	orderFile  = "order"
)

// parseOrder reads the order file: one module file name per line ("virtio_net.ko"), blank
// lines and #-comments ignored. Names are plain file names inside modulesDir.
func parseOrder(content string) ([]string, error) {
	var names []string
	seen := map[string]bool{}
	for i, line := range strings.Split(content, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.ContainsRune(line, '/') || line == "." || line == ".." {
			return nil, fmt.Errorf("order line %d: %q is not a file name", i+1, line)
		}
		if !strings.HasSuffix(line, ".ko") && moduleFlags(line) == 0 {
			return nil, fmt.Errorf("order line %d: %q is not a kernel module (.ko)", i+1, line)
		}
		if seen[line] {
			return nil, fmt.Errorf("order line %d: %s listed twice", i+1, line)
		}
		seen[line] = true
		names = append(names, line)
	}
	return names, nil
}

// moduleFlags tells finit_module to decompress the file itself when it is compressed (the
// kernel does so when built with CONFIG_MODULE_DECOMPRESS; Debian 12's modules are plain).
func moduleFlags(name string) int {
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(name, ext) {
			return unix.MODULE_INIT_COMPRESSED_FILE
		}
	}
	return 0
}

// moduleFailure is a module that did not load, and why.
type moduleFailure struct {
	Name string
	Err  error
}

// loadModules loads every module in order and goes on after a failure: one driver that
// will not load (hardware it does not like, firmware it lacks) must not cost the machine
// the NIC another driver would give it. A module whose dependency failed fails in turn.
func loadModules(names []string, load func(name string) error) (loaded int, failed []moduleFailure) {
	for _, name := range names {
		if err := load(name); err != nil {
			failed = append(failed, moduleFailure{Name: name, Err: err})
			continue
		}
		loaded++
	}
	return loaded, failed
}

// finitModule loads modulesDir/name into the kernel. A module that is already there (or
// built in) counts as loaded.
func finitModule(name string) error {
	f, err := os.Open(filepath.Join(modulesDir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", moduleFlags(name))
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}
