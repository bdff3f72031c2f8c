# Runs at install time (cmake --install, cpack), not at configure time: the
# systemd unit names the paths of the prefix it is installed under, and
# cpack installs under /usr whatever prefix the build was configured with.
# Set by packaging/CMakeLists.txt: MCDB_PACKAGING_SRC, MCDB_PACKAGING_BIN,
# MCDB_SBINDIR, MCDB_SYSCONFDIR, MCDB_DOCDIR (GNUInstallDirs' relative dirs).
#
# /etc as GNUInstallDirs has it: prefix /usr (a package) -> /etc,
# /opt/NAME -> /etc/opt/NAME, anything else (/usr/local) -> PREFIX/etc.
if(IS_ABSOLUTE "${MCDB_SYSCONFDIR}")
  set(sysconf "${MCDB_SYSCONFDIR}")
elseif(CMAKE_INSTALL_PREFIX MATCHES "^/usr/?$")
  set(sysconf "/${MCDB_SYSCONFDIR}")
elseif(CMAKE_INSTALL_PREFIX MATCHES "^/opt/(.*)$")
  set(sysconf "/${MCDB_SYSCONFDIR}/opt/${CMAKE_MATCH_1}")
else()
  set(sysconf "${CMAKE_INSTALL_PREFIX}/${MCDB_SYSCONFDIR}")
endif()
string(REGEX REPLACE "/+$" "" prefix "${CMAKE_INSTALL_PREFIX}")
set(MCDB_DEFAULTS_FILE "${sysconf}/default/mcdb")
set(MCDB_SBINDIR "${prefix}/${MCDB_SBINDIR}")
set(MCDB_DOCDIR "${prefix}/${MCDB_DOCDIR}")
configure_file("${MCDB_PACKAGING_SRC}/mcdb.service.in"
               "${MCDB_PACKAGING_BIN}/mcdb.service" @ONLY)
# systemd reads units from /usr/lib/systemd/system and from
# /usr/local/lib/systemd/system (systemd-analyze unit-paths), so PREFIX/lib
# (not the multiarch CMAKE_INSTALL_LIBDIR) works for both.
file(INSTALL DESTINATION "${prefix}/lib/systemd/system" TYPE FILE
     FILES "${MCDB_PACKAGING_BIN}/mcdb.service")
file(INSTALL DESTINATION "${sysconf}/default" TYPE FILE
     RENAME mcdb FILES "${MCDB_PACKAGING_SRC}/mcdb.default")
