#!/bin/sh
# Builds the real-PDF corpus that `kbsync-bench extraction` measures next to pdftotext:
# TeX-made manuals from Debian documentation packages, and PDFs that LibreOffice (Writer, headless)
# makes from real Debian documents. Nothing here is committed; the corpus lives outside the repo.
#
#   sudo testing/pdf-corpus/collect.sh [DEST]      # DEST defaults to /opt/kbsync-peers/pdf-corpus
#
# Needs: apt-get (Debian 12), dpkg-deb, poppler-utils (pdfinfo), and for the LibreOffice-made files
# libreoffice-writer-nogui (installed here if missing). No PDF made by Microsoft Word was found in
# Debian's documentation packages, so the corpus has none.
set -eu
DEST=${1:-/opt/kbsync-peers/pdf-corpus}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

need() { command -v "$1" >/dev/null 2>&1 || apt-get install -y --no-install-recommends "$2"; }
need pdfinfo poppler-utils
need soffice libreoffice-writer-nogui

mkdir -p "$DEST" "$WORK/x"
cd "$WORK"
apt-get download libtasn1-doc gnutls-doc r-doc-pdf gnuplot-doc asymptote-doc octave-doc \
    libgcrypt20-doc ghostscript-doc maxima-doc
for deb in ./*.deb; do dpkg-deb -x "$deb" x; done

# TeX (pdfTeX 1.40.24, plus one from pdfTeX 1.10b of 2004): manuals of 36 to 1,158 pages.
cp x/usr/share/doc/libtasn1-doc/libtasn1.pdf "$DEST/tex-libtasn1.pdf"
cp x/usr/share/R/doc/manual/R-intro.pdf "$DEST/tex-R-intro.pdf"
cp x/usr/share/R/doc/manual/R-exts.pdf "$DEST/tex-R-exts.pdf"
cp x/usr/share/doc/gnuplot/gnuplot.pdf "$DEST/tex-gnuplot.pdf"
cp x/usr/share/doc/asymptote/asymptote.pdf "$DEST/tex-asymptote.pdf"
cp x/usr/share/doc/gnutls-doc/gnutls.pdf "$DEST/tex-gnutls.pdf"
cp x/usr/share/doc/octave/octave.pdf "$DEST/tex-octave.pdf"
zcat x/usr/share/doc/libgcrypt20-doc/gcrypt.pdf.gz > "$DEST/tex-gcrypt.pdf"
zcat x/usr/share/doc/maxima-doc/maximabook-19-Sept-2004.pdf.gz > "$DEST/tex-maximabook-2004.pdf"
cp x/usr/share/doc/ghostscript/GS9_Color_Management.pdf "$DEST/tex-miktex-gs9-color.pdf"

# LibreOffice Writer 7.4: Ghostscript's HTML manuals and two plain-text licences, converted headless.
mkdir -p lo
cp x/usr/share/doc/ghostscript/News.htm lo/lo-ghostscript-news.htm
cp x/usr/share/doc/ghostscript/html/Use.html lo/lo-ghostscript-use.html
cp x/usr/share/doc/ghostscript/html/Drivers.html lo/lo-ghostscript-drivers.html
cp /usr/share/common-licenses/GPL-3 lo/lo-gpl3.txt
cp /usr/share/common-licenses/Apache-2.0 lo/lo-apache2.txt
HOME="$WORK" soffice --headless --convert-to pdf:writer_pdf_Export --outdir lo \
    lo/lo-ghostscript-news.htm lo/lo-ghostscript-use.html lo/lo-ghostscript-drivers.html lo/lo-gpl3.txt lo/lo-apache2.txt >/dev/null
cp lo/*.pdf "$DEST/"

for f in "$DEST"/*.pdf; do
    printf '%s\t%s bytes\t%s\n' "$(basename "$f")" "$(stat -c %s "$f")" \
        "$(pdfinfo "$f" 2>/dev/null | sed -n 's/^Producer: *//p')"
done
