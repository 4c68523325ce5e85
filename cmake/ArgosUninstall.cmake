# SPDX-License-Identifier: GPL-3.0-or-later
# Remove every file listed in an install manifest (cmake -DMANIFEST=... -P ArgosUninstall.cmake),
# then the directories only gr-argos uses (OWN_PACKAGE_DIR: the gr_argos package, with what
# Python byte-compiled there at run time; OWN_DATA_DIR: share/gr-argos). Used by the `uninstall` target of
# gr-argos' CMakeLists.txt.
if(NOT MANIFEST OR NOT EXISTS "${MANIFEST}")
    message(FATAL_ERROR "no install manifest at '${MANIFEST}': run `cmake --install` from this build dir first")
endif()

file(STRINGS "${MANIFEST}" files)
foreach(file ${files})
    set(path "$ENV{DESTDIR}${file}")
    if(IS_SYMLINK "${path}" OR EXISTS "${path}")
        message(STATUS "Uninstalling ${path}")
        file(REMOVE "${path}")
    else()
        message(STATUS "Already gone: ${path}")
    endif()
endforeach()

foreach(dir "${OWN_PACKAGE_DIR}" "${OWN_DATA_DIR}")
    set(path "$ENV{DESTDIR}${dir}")
    if(dir AND IS_DIRECTORY "${path}")
        message(STATUS "Uninstalling ${path}/")
        file(REMOVE_RECURSE "${path}")
    endif()
endforeach()
