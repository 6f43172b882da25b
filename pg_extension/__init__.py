"""The extension's files (laser.control, sql/) and their installer, build.py; in the wheel, the package
``laser_extension``, so `laser install` needs no checkout. The in-database package is laser_db."""
