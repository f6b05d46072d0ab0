//! Grouping the lines of a file by device: one line per device, one per
//! module, and no module without its device.

use std::collections::BTreeMap;
use std::io::BufRead;

use super::lines::{JsonlReader, ParseLine};
use super::{DeviceFile, DeviceRecord, ReadError, ReadErrorKind};

/// A line about a device or one of its modules.
pub(crate) trait DeviceLine {
    fn line(&self) -> u64;
    fn device_id(&self) -> &str;
    fn module_id(&self) -> Option<&str>;
}

/// Device lines by device id, each with its module lines by module id.
pub(crate) type Grouped<T> = BTreeMap<String, (T, BTreeMap<String, T>)>;

/// Reads every line of `reader`, groups them by device and makes each
/// group a record with `record`: what every `collect_*` reader does.
///
/// # Errors
///
/// As [`group`].
pub(crate) fn collect<R: BufRead, T: ParseLine + DeviceLine>(
    mut reader: JsonlReader<R, T>,
    record: impl Fn(String, T, BTreeMap<String, T>) -> DeviceRecord,
) -> Result<DeviceFile, ReadError> {
    let file = reader.file().to_owned();
    let devices = group(&file, reader.by_ref())?
        .into_iter()
        .map(|(id, (device, modules))| (id.clone(), record(id, device, modules)))
        .collect();
    Ok(DeviceFile {
        devices,
        skipped: reader.skipped(),
    })
}

/// Reads every line and groups them.
///
/// # Errors
///
/// The first bad line in file order; a second line for a device or module
/// (naming the first); then, once the whole file is read, the first module
/// line whose device has no line.
pub(crate) fn group<T: DeviceLine>(
    file: &str,
    lines: impl Iterator<Item = Result<T, ReadError>>,
) -> Result<Grouped<T>, ReadError> {
    let mut devices = BTreeMap::<String, T>::new();
    let mut modules = BTreeMap::<(String, String), T>::new();
    for line in lines {
        let line = line?;
        let id = line.device_id().to_owned();
        let duplicate = match line.module_id() {
            None => devices
                .get(&id)
                .map(|first| ReadErrorKind::DuplicateDevice {
                    first_line: first.line(),
                }),
            Some(module) => modules.get(&(id.clone(), module.to_owned())).map(|first| {
                ReadErrorKind::DuplicateModule {
                    first_line: first.line(),
                }
            }),
        };
        if let Some(kind) = duplicate {
            return Err(
                ReadError::new(file, line.line(), kind).with_device(Some(&id), line.module_id())
            );
        }
        match line.module_id().map(str::to_owned) {
            None => {
                devices.insert(id, line);
            }
            Some(module) => {
                modules.insert((id, module), line);
            }
        }
    }
    let orphan = modules
        .values()
        .filter(|m| !devices.contains_key(m.device_id()))
        .min_by_key(|m| m.line());
    if let Some(orphan) = orphan {
        return Err(
            ReadError::new(file, orphan.line(), ReadErrorKind::OrphanModule)
                .with_device(Some(orphan.device_id()), orphan.module_id()),
        );
    }
    let mut grouped: Grouped<T> = devices
        .into_iter()
        .map(|(id, line)| (id, (line, BTreeMap::new())))
        .collect();
    for ((id, module), line) in modules {
        if let Some((_, of_device)) = grouped.get_mut(&id) {
            of_device.insert(module, line);
        }
    }
    Ok(grouped)
}
