package images

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// DefaultModules are the kernel modules the image loads, dependencies left to modules.dep.
// Debian builds its NIC drivers as modules, so the image carries one for every NIC a
// machine may PXE-boot from. Listed in images/README.md; keep the two in step.
var DefaultModules = []string{
	// Go's crypto/rand (DHCP transaction IDs, TLS) waits for the kernel's random pool; a
	// VM without RDRAND seeds it from a virtio RNG.
	"virtio_rng",
	// Virtual machines: QEMU/KVM, VMware. Not Hyper-V: hv_vmbus refuses to load anywhere
	// else (ENODEV), which would put two failures on every other machine's console.
	"virtio_pci", "virtio_net", "vmxnet3",
	// Intel: 82540 (QEMU's default), PRO/1000 PCIe, 1 GbE I350/I210, 2.5 GbE I225/I226,
	// 10 GbE 82599/X540/X550, X710/XL710, E810.
	"e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "ice",
	// Broadcom NetXtreme (BCM57xx on-board NICs) and NetXtreme-C/E, Mellanox ConnectX-3
	// and ConnectX-4 and later, Realtek 8111/8168, Cisco VIC.
	"tg3", "bnxt_en", "mlx4_en", "mlx5_core", "r8169", "enic",
}

// Kernel is an installed Debian kernel: its version and where its image and modules are.
type Kernel struct {
	Version string
	Image   string // /boot/vmlinuz-<version>
	Modules string // /lib/modules/<version>
}

// FindKernel picks the kernel to boot: version if given, else the newest
// <bootDir>/vmlinuz-*-amd64 whose modules are installed under modulesDir.
func FindKernel(bootDir, modulesDir, version string) (Kernel, error) {
	var versions []string
	if version != "" {
		versions = []string{version}
	} else {
		images, err := filepath.Glob(filepath.Join(bootDir, "vmlinuz-*-amd64"))
		if err != nil {
			return Kernel{}, err
		}
		for _, img := range images {
			versions = append(versions, strings.TrimPrefix(filepath.Base(img), "vmlinuz-"))
		}
		sort.Slice(versions, func(i, j int) bool { return versionLess(versions[j], versions[i]) })
	}
	for _, v := range versions {
		k := Kernel{Version: v, Image: filepath.Join(bootDir, "vmlinuz-"+v), Modules: filepath.Join(modulesDir, v)}
		_, errImg := os.Stat(k.Image)
		_, errDep := os.Stat(filepath.Join(k.Modules, "modules.dep"))
		if errImg == nil && errDep == nil {
			return k, nil
		}
	}
	return Kernel{}, &MissingError{What: fmt.Sprintf("a Debian kernel in %s with modules in %s", bootDir, modulesDir),
		Install: "linux-image-amd64"}
}

// versionLess orders kernel versions by their numbers: 6.1.0-9 before 6.1.0-56.
func versionLess(a, b string) bool {
	as, bs := versionParts(a), versionParts(b)
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] != bs[i] {
			an, aerr := strconv.Atoi(as[i])
			bn, berr := strconv.Atoi(bs[i])
			if aerr == nil && berr == nil {
				return an < bn
			}
			return as[i] < bs[i]
		}
	}
	return len(as) < len(bs)
}

// versionParts splits a version into runs of digits and runs of the rest.
func versionParts(v string) []string {
	var parts []string
	for i := 0; i < len(v); {
		j := i + 1
		digit := v[i] >= '0' && v[i] <= '9'
		for j < len(v) && (v[j] >= '0' && v[j] <= '9') == digit {
			j++
		}
		parts = append(parts, v[i:j])
		i = j
	}
	return parts
}

// moduleName is how the kernel names a module file: dashes and underscores are the same.
func moduleName(file string) string {
	base := path.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ResolveModules returns the files (relative to the kernel's module directory) of the
// wanted modules and everything they depend on, in load order: dependencies first, then
// in the order wanted. A module built into the kernel needs no file and is skipped; one
// the kernel does not know at all is an error (a typo would otherwise cost a NIC).
func ResolveModules(modulesDir string, want []string) ([]string, error) {
	deps, byName, err := readModulesDep(filepath.Join(modulesDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin, err := readBuiltin(filepath.Join(modulesDir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	var order []string
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(p string) error
	visit = func(p string) error {
		switch state[p] {
		case 1:
			return fmt.Errorf("modules.dep: dependency cycle through %s", p)
		case 2:
			return nil
		}
		state[p] = 1
		for _, d := range deps[p] {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[p] = 2
		order = append(order, p)
		return nil
	}
	for _, m := range want {
		p, ok := byName[moduleName(m)]
		if !ok {
			if builtin[moduleName(m)] {
				continue
			}
			return nil, fmt.Errorf("module %s: not in %s", m, modulesDir)
		}
		if err := visit(p); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// readModulesDep reads "path: dep dep ..." lines: each module's direct dependencies.
func readModulesDep(file string) (deps map[string][]string, byName map[string]string, err error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	deps, byName = map[string][]string{}, map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		p, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[p] = strings.Fields(rest)
		byName[moduleName(p)] = p
	}
	return deps, byName, sc.Err()
}

// readBuiltin reads modules.builtin (one path a line) into module names; a kernel without
// the file has none built in as far as this is concerned.
func readBuiltin(file string) (map[string]bool, error) {
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, line := range strings.Fields(string(b)) {
		names[moduleName(line)] = true
	}
	return names, nil
}
