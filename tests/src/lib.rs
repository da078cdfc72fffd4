//! Shared test harnesses (the fuzz targets call these too).
