# Sourced by the wgpu bundle's scripts on the GPU machine (B = the bundle): the Vulkan loader
# and the glvnd libraries NVIDIA's Vulkan ICD links against, unpacked from the carried .debs
# when the machine lacks them, and the ICD exported; quiet loader.
if ! ldconfig -p | grep -q 'libvulkan.so.1' || ! ldconfig -p | grep -q 'libGLdispatch'; then
    for f in "$B"/deb/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    [ -e "$icd" ] && { export VK_DRIVER_FILES="$icd"; break; }
done
export VK_LOADER_DEBUG=error
