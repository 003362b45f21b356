package inventory

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// readCPUInfo counts processors and takes the model of the first one. Hosts with mixed
// core models (big.LITTLE) are rare on servers; the first model is good enough to show.
func readCPUInfo(path string) (count int, model string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, "", fmt.Errorf("inventory: read cpuinfo: %w", err)
	}
	return parseCPUInfo(path, data)
}

// parseCPUInfo is readCPUInfo on the content of the file named path.
func parseCPUInfo(path string, data []byte) (count int, model string, err error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(key) {
		case "processor":
			count++
		case "model name":
			if model == "" {
				model = strings.TrimSpace(value)
			}
		}
	}
	if count == 0 {
		return 0, "", fmt.Errorf("inventory: %s lists no processor", path)
	}
	return count, model, nil
}

// readMemTotal returns MemTotal in bytes; the kernel writes it in KiB despite the "kB".
func readMemTotal(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("inventory: read meminfo: %w", err)
	}
	return parseMemTotal(path, data)
}

// parseMemTotal is readMemTotal on the content of the file named path.
func parseMemTotal(path string, data []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			break
		}
		kib, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("inventory: %s: MemTotal: %w", path, err)
		}
		// Negative or overflowing sizes would be refused by the coordinator at registration.
		if kib < 0 || kib > math.MaxInt64/1024 {
			return 0, fmt.Errorf("inventory: %s: MemTotal %d kB is out of range", path, kib)
		}
		return kib * 1024, nil
	}
	return 0, fmt.Errorf("inventory: %s has no MemTotal", path)
}

// readTrimmed returns a one-value file's content, or "" when it cannot be read: the
// callers' files are optional, and sysfs answers some reads with EINVAL or EPERM.
func readTrimmed(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// readPrettyName returns PRETTY_NAME from an os-release file (os-release(5): shell-like
// assignments, values optionally quoted).
func readPrettyName(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return parsePrettyName(data)
}

// parsePrettyName is readPrettyName on an os-release file's content.
func parsePrettyName(data []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		value, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "PRETTY_NAME=")
		if !ok {
			continue
		}
		switch {
		case len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"':
			if unq, err := strconv.Unquote(value); err == nil {
				return unq
			}
			return value[1 : len(value)-1]
		case len(value) >= 2 && value[0] == '\'' && value[len(value)-1] == '\'':
			return value[1 : len(value)-1]
		}
		return value
	}
	return ""
}

// readSpeed returns a NIC's speed in Mb/s. The kernel reports -1 (or refuses the read)
// when the speed is unknown: link down, virtual device, or a driver that does not say.
func readSpeed(path string) int {
	n, err := strconv.Atoi(readTrimmed(path))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// skippedDiskPrefixes are block devices that are not disks an operator could use:
// loop and RAM devices, swap in compressed RAM, floppies and optical drives.
var skippedDiskPrefixes = []string{"loop", "ram", "zram", "fd", "sr"}

// readDisks lists the block devices of a sysfs block directory, sorted by name.
func readDisks(dir string) ([]Disk, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []Disk{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: list block devices: %w", err)
	}
	disks := []Disk{}
	for _, e := range entries {
		name := e.Name()
		if slices.ContainsFunc(skippedDiskPrefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		dev := filepath.Join(dir, name)
		sectors, err := strconv.ParseInt(readTrimmed(filepath.Join(dev, "size")), 10, 64)
		// Zero-sized devices are unconfigured device-mapper or nbd nodes and empty
		// card readers: nothing to install on, and they would come and go.
		if err != nil || sectors <= 0 {
			continue
		}
		disks = append(disks, Disk{
			Name: name,
			// sysfs counts 512-byte sectors whatever the device's logical block size.
			SizeBytes:  sectors * 512,
			Rotational: readTrimmed(filepath.Join(dev, "queue", "rotational")) == "1",
			Serial:     readDiskSerial(filepath.Join(dev, "device")),
		})
	}
	slices.SortFunc(disks, func(a, b Disk) int { return strings.Compare(a.Name, b.Name) })
	return disks, nil
}

// readDiskSerial reads device/serial (NVMe, virtio, MMC) or else the SCSI unit serial
// number VPD page 0x80 (SATA and SAS disks behind the SCSI layer).
func readDiskSerial(deviceDir string) string {
	if s := readTrimmed(filepath.Join(deviceDir, "serial")); s != "" {
		return s
	}
	page, err := os.ReadFile(filepath.Join(deviceDir, "vpd_pg80"))
	if err != nil {
		return ""
	}
	return parseVPD80(page)
}

// parseVPD80 extracts the serial from a Unit Serial Number VPD page (SPC-4 7.8.19): a
// 4-byte header whose last two bytes are the length, then space-padded ASCII.
func parseVPD80(page []byte) string {
	if len(page) < 4 || page[1] != 0x80 {
		return ""
	}
	n := int(page[2])<<8 | int(page[3])
	body := page[4:]
	if n < len(body) {
		body = body[:n]
	}
	return strings.Trim(string(body), " \t\n\x00")
}
