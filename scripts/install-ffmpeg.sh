#!/usr/bin/env bash
# Installs ffmpeg/ffprobe from the OS packages (Debian/Ubuntu apt; Homebrew on macOS).
set -euo pipefail
if command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; then exit 0; fi
if command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
elif command -v brew >/dev/null; then
  brew install ffmpeg
else
  echo "ffmpeg not found and no apt-get/brew: install ffmpeg (with ffprobe) and re-run" >&2
  exit 1
fi
ffmpeg -version | head -n 1
