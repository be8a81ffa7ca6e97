// Command extract is the Go side of bench/pkgfile.sh: it does what
// reconcile does with a cached package, OpenIn then ExtractTo, so that the
// benchmark times exactly that path against dpkg-deb and rpm2cpio | cpio.
//
//	extract PACKAGE ROOT DEST CANDIDATE...
//
// EXTRACT_CPUPROFILE=file writes a CPU profile. EXTRACT_PARALLEL=n runs n
// extractions of the package at once (into DEST.1 … DEST.n), sharing two
// decoder slots, the way a bake with --parallel n would.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"

	"github.com/nodeimage/reconcile/internal/pkgfile"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "extract:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if prof := os.Getenv("EXTRACT_CPUPROFILE"); prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if len(args) < 4 {
		return fmt.Errorf("usage: extract PACKAGE ROOT DEST CANDIDATE...")
	}
	cache, err := os.OpenRoot(filepath.Dir(args[0]))
	if err != nil {
		return err
	}
	defer cache.Close()
	p, err := pkgfile.OpenIn(cache, filepath.Base(args[0]), pkgfile.DefaultLimits)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(args[1])
	if err != nil {
		return err
	}
	defer root.Close()
	n, _ := strconv.Atoi(os.Getenv("EXTRACT_PARALLEL"))
	if n <= 1 {
		_, _, err = p.ExtractTo(root, args[2], args[3:])
		return err
	}
	l := pkgfile.DefaultLimits
	l.Decoders = pkgfile.NewDecoderSlots(2)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			p, err := pkgfile.OpenIn(cache, filepath.Base(args[0]), l)
			if err == nil {
				_, _, err = p.ExtractTo(root, fmt.Sprintf("%s.%d", args[2], i+1), args[3:])
			}
			errs <- err
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
