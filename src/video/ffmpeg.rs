//! Video files and cameras through the system `ffmpeg` program (no linked codec library: nothing to
//! build, every format the installed FFmpeg reads): `ffprobe` gives a file's size and rate,
//! `ffmpeg` writes raw RGB frames to a pipe, and for MP4 output reads them from one. Without the
//! programs every call fails with [`VideoError::ToolMissing`], which names what to install.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use image::RgbImage;

use super::{DEFAULT_FPS, Frame, FrameSource, VideoError, frame_duration};

pub const FFMPEG: &str = "ffmpeg";
pub const FFPROBE: &str = "ffprobe";

/// The last bytes of a program's error output kept for the message.
const STDERR_KEPT: usize = 4096;

fn spawn(
    program: &'static str,
    needed_for: &'static str,
    command: &mut Command,
) -> Result<Child, VideoError> {
    command.spawn().map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            VideoError::ToolMissing {
                program,
                needed_for,
            }
        } else {
            VideoError::Tool {
                program,
                what: format!("starting it {needed_for}"),
                detail: e.to_string(),
            }
        }
    })
}

/// Fails with [`VideoError::ToolMissing`] unless `ffmpeg` runs.
pub fn check_ffmpeg(needed_for: &'static str) -> Result<(), VideoError> {
    let mut command = Command::new(FFMPEG);
    command
        .arg("-version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn(FFMPEG, needed_for, &mut command)?
        .wait()
        .map_err(|e| VideoError::Tool {
            program: FFMPEG,
            what: "ffmpeg -version".into(),
            detail: e.to_string(),
        })?;
    Ok(())
}

/// Collects the end of a child's error output on its own thread (an unread pipe would block it).
fn drain_stderr(child: &mut Child) -> Option<JoinHandle<String>> {
    let mut stderr = child.stderr.take()?;
    std::thread::Builder::new()
        .name("ffmpeg-stderr".into())
        .spawn(move || {
            let mut kept = Vec::new();
            let mut chunk = [0u8; 1024];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > STDERR_KEPT {
                    kept.drain(..kept.len() - STDERR_KEPT);
                }
            }
            String::from_utf8_lossy(&kept).trim().to_string()
        })
        .ok()
}

fn collected(stderr: Option<JoinHandle<String>>) -> String {
    stderr.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// What `ffprobe` says of a file's first video stream, as `ffmpeg` decodes it (rotation applied).
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    pub fps: Option<f64>,
    /// Frames, from the container or estimated from the duration.
    pub frames: Option<usize>,
}

fn ratio(text: Option<&str>) -> Option<f64> {
    let (n, d) = text?.split_once('/')?;
    let (n, d) = (n.trim().parse::<f64>().ok()?, d.trim().parse::<f64>().ok()?);
    (d > 0.0 && n > 0.0).then_some(n / d)
}

/// Parses `ffprobe -of json` output for one stream.
fn parse_probe(json: &str) -> Result<VideoInfo, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("unreadable ffprobe output: {e}"))?;
    let stream = value
        .get("streams")
        .and_then(|s| s.get(0))
        .ok_or("no video stream")?;
    let size = |key: &str| {
        stream
            .get(key)
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .filter(|&v| v > 0)
    };
    let (Some(mut width), Some(mut height)) = (size("width"), size("height")) else {
        return Err("the video stream has no size".into());
    };
    let text = |key: &str| stream.get(key).and_then(|v| v.as_str());
    let rotation = stream
        .get("side_data_list")
        .and_then(|l| l.as_array())
        .and_then(|l| l.iter().find_map(|d| d.get("rotation")?.as_f64()))
        .or_else(|| stream.get("tags")?.get("rotate")?.as_str()?.parse().ok())
        .unwrap_or(0.0);
    // ffmpeg rotates frames upright by default: a quarter turn swaps the sides.
    if (rotation.abs().round() as i64) % 180 == 90 {
        std::mem::swap(&mut width, &mut height);
    }
    let fps = ratio(text("r_frame_rate")).or_else(|| ratio(text("avg_frame_rate")));
    let frames = text("nb_frames")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .or_else(|| {
            let seconds = text("duration")?.parse::<f64>().ok()?;
            Some((seconds * fps?).round() as usize).filter(|&n| n > 0)
        });
    Ok(VideoInfo {
        width,
        height,
        fps,
        frames,
    })
}

/// Size, rate and frame count of a video file.
pub fn probe(path: &Path) -> Result<VideoInfo, VideoError> {
    if !path.is_file() {
        return Err(VideoError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(ErrorKind::NotFound, "no such file"),
        });
    }
    let mut command = Command::new(FFPROBE);
    command
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg(
            "stream=width,height,r_frame_rate,avg_frame_rate,nb_frames,duration:\
             stream_tags=rotate:stream_side_data=rotation",
        )
        .args(["-of", "json"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = spawn(FFPROBE, "to read video files", &mut command).and_then(|child| {
        child.wait_with_output().map_err(|e| VideoError::Io {
            path: path.to_path_buf(),
            source: e,
        })
    })?;
    let decode = |detail: String| VideoError::Decode {
        path: path.to_path_buf(),
        detail,
    };
    if !output.status.success() {
        let detail = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(decode(format!("not a readable video ({detail})")));
    }
    parse_probe(&String::from_utf8_lossy(&output.stdout)).map_err(decode)
}

/// A camera read through ffmpeg's capture input (`v4l2` on Linux, `avfoundation` on macOS,
/// `dshow` on Windows; `lavfi` test patterns work too). Frames are scaled and letterboxed to
/// exactly `width x height`, whatever size the device delivers.
#[derive(Clone, Debug, PartialEq)]
pub struct CaptureSpec {
    /// ffmpeg's input format (`-f`).
    pub format: String,
    /// The device (`-i`): `/dev/video0`, `0`, `video=Integrated Camera` (`ffmpeg -list_devices
    /// true -f dshow -i dummy` lists the names on Windows).
    pub device: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl Default for CaptureSpec {
    /// The first camera of the platform at 640 x 480, 30 frames per second.
    fn default() -> Self {
        let (format, device) = if cfg!(target_os = "macos") {
            ("avfoundation", "0")
        } else if cfg!(target_os = "windows") {
            ("dshow", "video=Integrated Camera")
        } else {
            ("v4l2", "/dev/video0")
        };
        CaptureSpec {
            format: format.into(),
            device: device.into(),
            width: 640,
            height: 480,
            fps: 30,
        }
    }
}

impl CaptureSpec {
    fn args(&self) -> Vec<String> {
        let (w, h) = (self.width.max(2), self.height.max(2));
        let mut args: Vec<String> = ["-fflags", "nobuffer", "-f", &self.format]
            .map(String::from)
            .into();
        // Devices take the asked size and rate as a request; lavfi sources have no such options.
        if self.format != "lavfi" {
            args.extend([
                "-framerate".into(),
                self.fps.to_string(),
                "-video_size".into(),
                format!("{w}x{h}"),
            ]);
        }
        args.extend([
            "-i".into(),
            self.device.clone(),
            "-vf".into(),
            format!(
                "scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2"
            ),
        ]);
        args
    }
}

/// Raw RGB frames from an `ffmpeg` child process.
pub struct FfmpegSource {
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<String>>,
    /// The file or device, for messages.
    name: String,
    width: u32,
    height: u32,
    duration: Duration,
    frames: Option<usize>,
    live: bool,
    next: u64,
    ended: bool,
}

impl FfmpegSource {
    /// Decodes a video file's first video stream.
    pub fn open_file(path: &Path) -> Result<FfmpegSource, VideoError> {
        let info = probe(path)?;
        let mut args: Vec<String> = vec!["-i".into()];
        args.push(path.to_string_lossy().into_owned());
        args.extend(["-map", "0:v:0"].map(String::from));
        FfmpegSource::start(
            &args,
            "to read video files",
            path.display().to_string(),
            (info.width, info.height),
            info.fps.unwrap_or(DEFAULT_FPS),
            info.frames,
            false,
        )
    }

    /// Reads a camera.
    pub fn open_capture(spec: &CaptureSpec) -> Result<FfmpegSource, VideoError> {
        FfmpegSource::start(
            &spec.args(),
            "to read a camera",
            format!("camera {}", spec.device),
            (spec.width.max(2), spec.height.max(2)),
            spec.fps as f64,
            None,
            true,
        )
    }

    fn start(
        input: &[String],
        needed_for: &'static str,
        name: String,
        (width, height): (u32, u32),
        fps: f64,
        frames: Option<usize>,
        live: bool,
    ) -> Result<FfmpegSource, VideoError> {
        let mut command = Command::new(FFMPEG);
        command
            .args(["-hide_banner", "-nostdin", "-v", "error"])
            .args(input)
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn(FFMPEG, needed_for, &mut command)?;
        let stderr = drain_stderr(&mut child);
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(VideoError::Tool {
                program: FFMPEG,
                what: name,
                detail: "no output pipe".into(),
            });
        };
        Ok(FfmpegSource {
            child,
            stdout,
            stderr,
            name,
            width,
            height,
            duration: frame_duration(fps),
            frames,
            live,
            next: 0,
            ended: false,
        })
    }

    /// Waits for ffmpeg after its output ended: an error when it failed.
    fn finish(&mut self) -> Result<(), VideoError> {
        self.ended = true;
        let status = self.child.wait().map_err(|e| VideoError::Tool {
            program: FFMPEG,
            what: self.name.clone(),
            detail: e.to_string(),
        })?;
        let stderr = collected(self.stderr.take());
        if status.success() {
            return if self.next == 0 {
                Err(VideoError::NoFrames {
                    path: PathBuf::from(&self.name),
                })
            } else {
                Ok(())
            };
        }
        Err(VideoError::Tool {
            program: FFMPEG,
            what: self.name.clone(),
            detail: if stderr.is_empty() {
                format!("it stopped ({status})")
            } else {
                stderr
            },
        })
    }
}

impl FrameSource for FfmpegSource {
    fn next_frame(&mut self) -> Result<Option<Frame>, VideoError> {
        if self.ended {
            return Ok(None);
        }
        let mut buffer = vec![0u8; self.width as usize * self.height as usize * 3];
        let mut filled = 0;
        while filled < buffer.len() {
            match self.stdout.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(VideoError::Io {
                        path: PathBuf::from(&self.name),
                        source: e,
                    });
                }
            }
        }
        // A partial last frame (a truncated file) is dropped.
        if filled < buffer.len() {
            self.finish()?;
            return Ok(None);
        }
        let image = RgbImage::from_raw(self.width, self.height, buffer).ok_or_else(|| {
            VideoError::Decode {
                path: PathBuf::from(&self.name),
                detail: "frame of the wrong size".into(),
            }
        })?;
        let index = self.next;
        self.next += 1;
        Ok(Some(Frame {
            index,
            image,
            duration: self.duration,
        }))
    }

    fn frame_count(&self) -> Option<usize> {
        self.frames
    }

    fn is_live(&self) -> bool {
        self.live
    }
}

impl Drop for FfmpegSource {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Frames piped into `ffmpeg`, encoded as H.264 in an MP4 (yuv420p, playable in browsers). The
/// file appears under its name only when the encoder finished.
pub struct Mp4Encoder {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    path: PathBuf,
    partial: PathBuf,
}

impl Mp4Encoder {
    pub fn start(path: &Path, (width, height): (u32, u32), fps: f64) -> Result<Self, VideoError> {
        let partial = crate::atomic_file::partial_path(path);
        let mut command = Command::new(FFMPEG);
        command
            .args(["-hide_banner", "-v", "error", "-y", "-f", "rawvideo"])
            .args(["-pix_fmt", "rgb24", "-s", &format!("{width}x{height}")])
            .args(["-r", &format!("{fps}"), "-i", "-"])
            // yuv420p needs even sides.
            .args(["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"])
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
            .args(["-movflags", "+faststart", "-f", "mp4"])
            .arg(&partial)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn(FFMPEG, "to write MP4 files", &mut command)?;
        let stderr = drain_stderr(&mut child);
        let stdin = child.stdin.take();
        Ok(Mp4Encoder {
            child,
            stdin,
            stderr,
            path: path.to_path_buf(),
            partial,
        })
    }

    pub fn write(&mut self, image: &RgbImage) -> Result<(), VideoError> {
        let written = match &mut self.stdin {
            Some(stdin) => stdin.write_all(image.as_raw()),
            None => Err(std::io::Error::new(ErrorKind::BrokenPipe, "closed")),
        };
        written.map_err(|e| {
            // ffmpeg stopped: its own message says why.
            self.stdin = None;
            let _ = self.child.wait();
            let stderr = collected(self.stderr.take());
            VideoError::Write {
                path: self.path.clone(),
                detail: if stderr.is_empty() {
                    e.to_string()
                } else {
                    format!("ffmpeg: {stderr}")
                },
            }
        })
    }

    /// Closes the pipe, waits for ffmpeg and moves the file into place.
    pub fn finish(mut self) -> Result<(), VideoError> {
        self.stdin = None;
        let failed = |detail: String| VideoError::Write {
            path: self.path.clone(),
            detail,
        };
        let status = self.child.wait().map_err(|e| failed(e.to_string()))?;
        let stderr = collected(self.stderr.take());
        if !status.success() {
            let _ = std::fs::remove_file(&self.partial);
            return Err(failed(format!("ffmpeg: {stderr} ({status})")));
        }
        std::fs::rename(&self.partial, &self.path).map_err(|e| failed(e.to_string()))
    }
}

impl Drop for Mp4Encoder {
    fn drop(&mut self) {
        if self.stdin.take().is_some() {
            // Dropped before `finish`: an unfinished recording leaves no file.
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_gives_size_rate_count_and_rotation() {
        let json = r#"{"streams": [{"width": 320, "height": 240, "r_frame_rate": "30000/1001",
            "avg_frame_rate": "0/0", "nb_frames": "48"}]}"#;
        let info = parse_probe(json).unwrap();
        assert_eq!((info.width, info.height, info.frames), (320, 240, Some(48)));
        assert!((info.fps.unwrap() - 29.97).abs() < 0.01);
        let rotated = r#"{"streams": [{"width": 320, "height": 240, "r_frame_rate": "25/1",
            "duration": "2.0", "side_data_list": [{"rotation": -90}]}]}"#;
        let info = parse_probe(rotated).unwrap();
        assert_eq!((info.width, info.height, info.frames), (240, 320, Some(50)));
        let tagged = r#"{"streams": [{"width": 8, "height": 6, "tags": {"rotate": "270"}}]}"#;
        let info = parse_probe(tagged).unwrap();
        assert_eq!(
            (info.width, info.height, info.fps, info.frames),
            (6, 8, None, None)
        );
        assert!(parse_probe(r#"{"streams": []}"#).is_err());
    }

    #[test]
    fn capture_arguments_ask_the_device_and_force_the_size() {
        let spec = CaptureSpec {
            format: "v4l2".into(),
            device: "/dev/video2".into(),
            width: 320,
            height: 240,
            fps: 15,
        };
        let args = spec.args().join(" ");
        assert!(args.contains("-f v4l2 -framerate 15 -video_size 320x240 -i /dev/video2"));
        assert!(args.contains("pad=320:240"));
        let lavfi = CaptureSpec {
            format: "lavfi".into(),
            device: "testsrc".into(),
            ..spec
        };
        assert!(!lavfi.args().join(" ").contains("-framerate"));
    }

    #[test]
    fn a_missing_program_names_what_to_install() {
        let mut command = Command::new("dinoscope-no-such-program");
        let err = spawn(FFMPEG, "to read video files", &mut command).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, VideoError::ToolMissing { .. }));
        assert!(text.contains("apt install ffmpeg") && text.contains("to read video files"));
    }
}
