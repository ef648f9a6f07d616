package vboard

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Initramfs is the guest's root filesystem, written as a gzip-compressed newc cpio archive
// (what the kernel unpacks into its rootfs). Names are guest paths; missing parent
// directories are added. Files added from the host are read only when the archive is
// written. The archive is reproducible: entries are sorted, owned by root, dated 1970.
type Initramfs struct {
	entries map[string]entry
}

type entry struct {
	mode   uint32 // file type and permission bits, as in st_mode
	data   []byte // a file's contents or a symlink's target, unless host is set
	host   string // a regular file copied from the host
	size   int64
	rmajor uint32 // a device node's major and minor numbers
	rminor uint32
}

// The file type bits of a cpio mode (the st_mode values).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

// NewInitramfs returns an empty archive.
func NewInitramfs() *Initramfs {
	return &Initramfs{entries: map[string]entry{}}
}

// Dir adds a directory (0755).
func (a *Initramfs) Dir(name string) {
	a.add(name, entry{mode: modeDir | 0o755})
}

// File adds a regular file with the given contents.
func (a *Initramfs) File(name string, perm fs.FileMode, data []byte) {
	a.add(name, entry{mode: modeRegular | uint32(perm.Perm()), data: data, size: int64(len(data))})
}

// CopyFile adds the host file src as name, with the given permissions.
func (a *Initramfs) CopyFile(name, src string, perm fs.FileMode) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("initramfs: add %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("initramfs: add %s: %s is not a regular file", name, src)
	}
	if fi.Size() > math.MaxUint32 {
		return fmt.Errorf("initramfs: add %s: %s is over the 4 GiB a newc entry holds", name, src)
	}
	a.add(name, entry{mode: modeRegular | uint32(perm.Perm()), host: src, size: fi.Size()})
	return nil
}

// CopyTree adds the host directory src, with its subdirectories, regular files and symlinks,
// as the directory name.
func (a *Initramfs) CopyTree(name, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("initramfs: add %s: %w", name, err)
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return fmt.Errorf("initramfs: add %s: %w", name, err)
		}
		guest := path.Join(name, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			a.Dir(guest)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("initramfs: add %s: %w", guest, err)
			}
			a.Symlink(guest, target)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return fmt.Errorf("initramfs: add %s: %w", guest, err)
			}
			return a.CopyFile(guest, p, fi.Mode().Perm())
		}
		return nil
	})
}

// Symlink adds a symbolic link to target.
func (a *Initramfs) Symlink(name, target string) {
	a.add(name, entry{mode: modeSymlink | 0o777, data: []byte(target), size: int64(len(target))})
}

// CharDev adds a character device node. Only /dev/console needs one: the kernel opens it for
// /init before /init can mount devtmpfs, which provides every other node.
func (a *Initramfs) CharDev(name string, perm fs.FileMode, major, minor uint32) {
	a.add(name, entry{mode: modeCharDev | uint32(perm.Perm()), rmajor: major, rminor: minor})
}

// Has reports whether the archive holds name.
func (a *Initramfs) Has(name string) bool {
	_, ok := a.entries[clean(name)]
	return ok
}

func (a *Initramfs) add(name string, e entry) {
	name = clean(name)
	if name == "" {
		return
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if _, ok := a.entries[dir]; !ok {
			a.entries[dir] = entry{mode: modeDir | 0o755}
		}
	}
	a.entries[name] = e
}

// clean turns a guest path into an archive name: relative, slash-separated, no dot segments.
func clean(name string) string {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	return name
}

// WriteFile writes the compressed archive to the host file dst.
func (a *Initramfs) WriteFile(dst string) error {
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = a.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("initramfs: %w", cerr)
	}
	return err
}

// Write writes the gzip-compressed newc archive to w.
func (a *Initramfs) Write(w io.Writer) error {
	zw := gzip.NewWriter(w)
	cw := &cpioWriter{w: zw}
	names := make([]string, 0, len(a.entries))
	for name := range a.entries {
		names = append(names, name)
	}
	sort.Strings(names) // a directory sorts before what it holds
	for _, name := range names {
		if err := cw.entry(name, a.entries[name]); err != nil {
			return fmt.Errorf("initramfs: write %s: %w", name, err)
		}
	}
	if err := cw.trailer(); err != nil {
		return fmt.Errorf("initramfs: write trailer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("initramfs: compress: %w", err)
	}
	return nil
}

// cpioWriter writes the "new ASCII" (newc, magic 070701) format the kernel reads: a
// 110-byte header of hex fields, the NUL-terminated name, the data, each padded to 4 bytes.
type cpioWriter struct {
	w   io.Writer
	off int64
	ino uint32
}

func (c *cpioWriter) entry(name string, e entry) error {
	c.ino++
	nlink := uint32(1)
	if e.mode&0o170000 == modeDir {
		nlink = 2
	}
	if err := c.header(c.ino, name, e.mode, nlink, e.size, e.rmajor, e.rminor); err != nil {
		return err
	}
	if e.host == "" {
		return c.write(e.data)
	}
	f, err := os.Open(e.host)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(c.w, io.LimitReader(f, e.size))
	c.off += n
	if err != nil {
		return err
	}
	if n != e.size {
		return fmt.Errorf("%s shrank from %d to %d bytes while packing", e.host, e.size, n)
	}
	return c.pad()
}

func (c *cpioWriter) trailer() error {
	return c.header(0, "TRAILER!!!", 0, 1, 0, 0, 0)
}

func (c *cpioWriter) header(ino uint32, name string, mode, nlink uint32, size int64, rmajor, rminor uint32) error {
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
	// rdevminor, namesize (with the NUL), check.
	h := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, uint32(size), 0, 0, rmajor, rminor, len(name)+1, 0)
	if err := c.write([]byte(h + name + "\x00")); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) write(p []byte) error {
	n, err := c.w.Write(p)
	c.off += int64(n)
	if err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) pad() error {
	if r := c.off % 4; r != 0 {
		n, err := c.w.Write(make([]byte, 4-r))
		c.off += int64(n)
		return err
	}
	return nil
}
