// Package events writes provisioning events in the format node provisioning
// already collects: one JSON file per event, named <epoch-ms>.json, in an
// events directory.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"time"

	"github.com/nodeimage/reconcile/internal/rootfs"
)

// Event is one provisioning event. The field names and the string-typed pid
// and tid are the collector's.
type Event struct {
	Timestamp   string // start, "2006-01-02 15:04:05.000"
	OperationId string //nolint:revive // the collector's spelling
	Version     string
	TaskName    string
	EventLevel  string
	Message     string
	EventPid    string
	EventTid    string
}

// Levels.
const (
	Informational = "Informational"
	Error         = "Error"
)

// FormatVersion is the event schema version the collector expects.
const FormatVersion = "1.23"

const timeLayout = "2006-01-02 15:04:05.000"

// New is an event for a task that ran from start to end; failed marks it an
// error.
func New(task string, start, end time.Time, failed bool, msg string) Event {
	level := Informational
	if failed {
		level = Error
	}
	return Event{
		Timestamp:   start.UTC().Format(timeLayout),
		OperationId: end.UTC().Format(timeLayout),
		Version:     FormatVersion,
		TaskName:    task,
		EventLevel:  level,
		Message:     msg,
		EventPid:    "0",
		EventTid:    "0",
	}
}

// Writer writes events into a directory under a root.
type Writer struct {
	Root *os.Root
	Dir  string // absolute, under Root
}

// Write stores e as <epoch-ms>.json, named for the event's start; events
// that start in the same millisecond take the next free name, so none is
// overwritten.
func (w Writer) Write(e Event, start time.Time) error {
	dir := rootfs.Rel(w.Dir)
	if err := w.Root.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating events dir %s: %w", w.Dir, err)
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	for ms := start.UnixMilli(); ; ms++ {
		name := path.Join(dir, strconv.FormatInt(ms, 10)+".json")
		f, err := w.Root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("writing event %s: %w", e.TaskName, err)
		}
		_, werr := f.Write(data)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("writing event %s: %w", e.TaskName, werr)
		}
		return nil
	}
}
