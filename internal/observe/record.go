package observe

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/nodeimage/reconcile/internal/rootfs"
	"github.com/nodeimage/reconcile/internal/state"
)

// ErrRecordCorrupt is a record that cannot be read as one: bad JSON, data
// after the JSON, too large, or not a regular file. Callers go on with an
// empty record (everything is re-checked against packages) and say so: a
// broken record never blocks a node.
var ErrRecordCorrupt = errors.New("state record is corrupt")

// maxRecord bounds the record: a thousand binaries take about 1 MB.
const maxRecord = 16 << 20

// LoadRecord reads the record; a missing one is an empty record. A corrupt
// one is an empty record with an error wrapping ErrRecordCorrupt.
func LoadRecord(root *os.Root) (state.Record, error) {
	rec := state.Record{Format: state.RecordFormat, Files: map[string]state.Binary{}}
	f, err := rootfs.OpenRegular(root, state.RecordPath)
	if errors.Is(err, fs.ErrNotExist) {
		return rec, nil
	}
	if errors.Is(err, rootfs.ErrNotRegular) {
		return rec, fmt.Errorf("%w: %v", ErrRecordCorrupt, err)
	}
	if err != nil {
		return rec, fmt.Errorf("reading state record: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil {
		return rec, fmt.Errorf("reading state record /%s: %w", state.RecordPath, err)
	}
	if len(data) > maxRecord {
		return rec, fmt.Errorf("%w: /%s is larger than %d MiB", ErrRecordCorrupt, state.RecordPath, maxRecord>>20)
	}
	var got state.Record
	// Unmarshal, not a Decoder: data after the JSON document is corruption
	// (a torn write, two records glued), never ignored.
	if err := json.Unmarshal(data, &got); err != nil {
		return rec, fmt.Errorf("%w: /%s: %v", ErrRecordCorrupt, state.RecordPath, err)
	}
	if got.Format != state.RecordFormat || got.Files == nil {
		return rec, nil
	}
	return got, nil
}

// SaveRecord writes the record atomically.
func SaveRecord(root *os.Root, rec state.Record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	_, err = rootfs.WriteAtomic(root, state.RecordPath, 0o644, func(w io.Writer) error {
		_, err := w.Write(append(data, '\n'))
		return err
	})
	if err != nil {
		return fmt.Errorf("writing state record: %w", err)
	}
	return nil
}
