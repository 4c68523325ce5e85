# Remove every file listed in an install manifest (cmake -DMANIFEST=... -P ArgosUninstall.cmake).
# Used by the `uninstall` target of gr-argos' CMakeLists.txt.
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
