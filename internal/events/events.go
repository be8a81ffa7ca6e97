// Package events writes provisioning events in the format node provisioning
// already collects: one JSON file per event, named <epoch-ms>.json, in an
// events directory.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// overwritten. The file appears whole: it is written under a temp name and
// hard-linked to its final name, which fails rather than replaces when the
// name is taken, so a collector never reads half an event.
func (w Writer) Write(e Event, start time.Time) error {
	dir := rootfs.Rel(w.Dir)
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	tmp := path.Join(dir, rootfs.TempPrefix+"event-"+strconv.FormatInt(start.UnixNano(), 10))
	if _, err := rootfs.WriteAtomic(w.Root, tmp, 0o644, func(f io.Writer) error {
		_, err := f.Write(data)
		return err
	}); err != nil {
		return fmt.Errorf("writing event %s: %w", e.TaskName, err)
	}
	defer w.Root.Remove(tmp)
	for ms := start.UnixMilli(); ; ms++ {
		err := w.Root.Link(tmp, path.Join(dir, strconv.FormatInt(ms, 10)+".json"))
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("writing event %s: %w", e.TaskName, err)
		}
		return nil
	}
}
